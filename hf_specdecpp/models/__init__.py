"""The real draft/target pair (Qwen2.5-Coder 0.5B -> 1.5B Instruct): fetching, caching and loading."""

from .cpu_linear import FewRowLinear, use_fast_cpu_linear
from .fetch import (
    DRAFT,
    MODELS,
    TARGET,
    ChecksumError,
    ChunkDownloadError,
    ChunkedGGUF,
    FetchError,
    MissingChunkFileError,
    default_cache_dir,
    fetch_model,
    fetch_models,
    load_pair,
)

__all__ = [
    "DRAFT",
    "MODELS",
    "TARGET",
    "ChecksumError",
    "ChunkDownloadError",
    "ChunkedGGUF",
    "FetchError",
    "FewRowLinear",
    "MissingChunkFileError",
    "default_cache_dir",
    "fetch_model",
    "fetch_models",
    "load_pair",
    "use_fast_cpu_linear",
]
