"""hf-specdecpp: SpecDec++ adaptive candidate lengths for speculative decoding in transformers' generate()."""

from .compat import check_transformers_version

check_transformers_version()

from .head import AcceptanceHead  # noqa: E402
from .inference.stats import SpeculationStats  # noqa: E402
from .inference.stopping import RejectionThresholdCriteria  # noqa: E402

__version__ = "0.1.0"

__all__ = ["AcceptanceHead", "RejectionThresholdCriteria", "SpeculationStats", "__version__"]
