"""The transformers versions this package supports, checked once at import time."""

from __future__ import annotations

from packaging.version import Version

import transformers

# Keep in sync with `install_requires` in setup.cfg. The candidate-generator plumbing
# (`hf_specdecpp/inference/generate_patch.py`) relies on private details of these versions.
MIN_TRANSFORMERS = "5.23.0"
MAX_TRANSFORMERS_EXCLUSIVE = "5.24.0"
SUPPORTED_RANGE = f">={MIN_TRANSFORMERS},<{MAX_TRANSFORMERS_EXCLUSIVE}"


def is_supported_transformers(version: str) -> bool:
    """True when `version` lies in the supported transformers range."""
    v = Version(Version(version).base_version)
    return Version(MIN_TRANSFORMERS) <= v < Version(MAX_TRANSFORMERS_EXCLUSIVE)


def check_transformers_version(version: str | None = None) -> None:
    """Raise an ImportError naming the supported range when transformers is outside it."""
    version = version or transformers.__version__
    if not is_supported_transformers(version):
        raise ImportError(
            f"hf_specdecpp supports transformers {SUPPORTED_RANGE}, but transformers {version} is installed. "
            f'Install a supported version: pip install "transformers{SUPPORTED_RANGE}"'
        )
