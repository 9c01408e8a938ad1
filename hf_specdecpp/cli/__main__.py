"""`python -m hf_specdecpp.cli` (also `accelerate launch -m hf_specdecpp.cli train ...`)."""

from . import main

if __name__ == "__main__":
    main()
