"""Shared mechanics of speculative decoding that every method uses and that import no method.

One chain round reads four files: `chain` (the loop, the call's context, verification, statistics), `drafting`
(each model's session and the draft's loop), `processing` (generate()'s processors and stopping criteria applied
token by token) and `cache` (rollback and re-alignment). Beside them: `assisted` (the chain as transformers'
`CandidateGenerator`), `pair` (draft/target checks and vocabularies), `compat` (differences between
transformers releases), `device`, `validation`, `costs` and `cpu_linear`."""
