"""Front doors into transformers' generate(): the `candidate_generator=` patch and its behavioural check.

(The other front door, `custom_generate=`, is the method object itself: `methods/base.py`.)
"""
