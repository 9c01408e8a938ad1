"""The benchmark: SpecDec++ against transformers' assisted generation, fixed K, entropy stopping and trees.

Two modes, sharing configurations (`configs`), calls (`calls`), machine descriptions (`machine`) and plots:
- timed (`runner`): every configuration on every prompt, interleaved per prompt, wall-clock timed; records
  (`records`), checkpoint and resume (`checkpoint`), summary table (`summary`), paired statistics (`paired`),
  the greedy oracle (`oracle`), files (`outputs`, `plots`);
- exact (`exact/`): greedy counts replayed exactly from one recorded trace per prompt, sampling counted over
  seeds, turned into time with the cost curve measured on the machine, validated by the timed mode on a subset.

`command` is the CLI's `bench` command; `models` loads the tiny or the real pair; `overhead` times the head.
Imports the package's public API only (never `training`).
"""
