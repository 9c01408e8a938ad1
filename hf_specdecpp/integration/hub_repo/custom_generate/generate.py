"""SpecDec++ speculative decoding as a transformers `custom_generate` method.

transformers runs this file for `model.generate(..., custom_generate="<this repo>", trust_remote_code=True)`
after checking `requirements.txt` (the `hf-specdecpp` package). The method itself lives in that package, so
this repository only points at it: `hf_specdecpp.integration.hub_method.generate` resolves the draft model and
the acceptance head (objects or Hub ids) and decodes with the target's exact output.
"""

from hf_specdecpp.integration.hub_method import generate  # noqa: F401 (transformers looks up `generate` here)
