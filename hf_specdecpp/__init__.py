"""hf-specdecpp: SpecDec++ adaptive candidate lengths for speculative decoding in transformers' generate().

`import hf_specdecpp` adds a `candidate_generator=` argument to `generate()` (see
`hf_specdecpp.integration.generate_patch`); the patch-free route is `generate(custom_generate=method)`.
The public names load lazily, so `hf-specdecpp --help` and `import hf_specdecpp.head` stay fast; the generate()
patch is installed as soon as transformers' generation code is loaded, or at the first use of a public name.

Layers (imports go one way): `utils` -> `core` (shared mechanics) and `head` (the acceptance head) ->
`methods` (one folder per decoding method, a registry) -> `integration` (the generate() patch) ->
`training`, `bench`, `cli`.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

__version__ = "0.2.0"

_PUBLIC = {
    "AcceptanceHead": "hf_specdecpp.head",
    "DeviceKind": "hf_specdecpp.head",
    "HeadPolicy": "hf_specdecpp.head",
    "load_shipped_head": "hf_specdecpp.head.shipped",
    "DySpecMethod": "hf_specdecpp.methods",
    "DySpecConfig": "hf_specdecpp.methods",
    "EntropyMethod": "hf_specdecpp.methods",
    "EntropyConfig": "hf_specdecpp.methods",
    "FixedKMethod": "hf_specdecpp.methods",
    "FixedKConfig": "hf_specdecpp.methods",
    "GammaTuneMethod": "hf_specdecpp.methods",
    "GammaTuneConfig": "hf_specdecpp.methods",
    "SpecDecPPMethod": "hf_specdecpp.methods",
    "SpecDecPPConfig": "hf_specdecpp.methods",
    "RejectionThresholdRule": "hf_specdecpp.methods",
    "MethodConfig": "hf_specdecpp.methods",
    "SpeculativeDecoderOnlyOutput": "hf_specdecpp.methods",
    # former names, aliases of the same classes (hf_specdecpp.methods.ALIASES)
    "DySpecCandidateGenerator": "hf_specdecpp.methods",
    "EntropyStoppingCandidateGenerator": "hf_specdecpp.methods",
    "FixedLengthCandidateGenerator": "hf_specdecpp.methods",
    "GammaTuneCandidateGenerator": "hf_specdecpp.methods",
    "SpecDecPPCandidateGenerator": "hf_specdecpp.methods",
    "RejectionThresholdCriteria": "hf_specdecpp.methods",
    "SpeculationStats": "hf_specdecpp.core.chain",
    "RowStats": "hf_specdecpp.core.chain",
    "TESTED_RANGE": "hf_specdecpp.core.compat",
}

__all__ = sorted([*_PUBLIC, "install", "uninstall", "__version__"])


def install() -> None:
    """Add `candidate_generator=` to transformers' generate() (idempotent). Outside the tested transformers
    range this warns once; the patch then checks itself by behaviour before its first use (and routes calls to
    the package's own loop if transformers' assisted decoding changed)."""
    from .core.compat import TESTED_RANGE, is_tested_transformers
    from .integration.generate_patch import install as _install

    if not is_tested_transformers():
        import transformers

        from .utils.warnings import warn_once

        warn_once("transformers-range", f"hf_specdecpp is tested with transformers {TESTED_RANGE}; transformers "
                  f"{transformers.__version__} is installed. The generate() patch checks itself by behaviour before "
                  "its first use and falls back to hf_specdecpp's own decoding loop if transformers changed; "
                  "custom_generate=, heads and training do not depend on it.", stacklevel=2)
    _install()


def uninstall() -> None:
    """Restore transformers' own generate()."""
    from .integration.generate_patch import uninstall as _uninstall

    _uninstall()


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'hf_specdecpp' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    install()
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if "transformers.generation.utils" in sys.modules:  # transformers is in use already: patch now
    install()
