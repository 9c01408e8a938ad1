"""The real draft/target pair (Qwen2.5-Coder 0.5B -> 1.5B Instruct): fetching, caching and loading."""

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
    "MissingChunkFileError",
    "default_cache_dir",
    "fetch_model",
    "fetch_models",
    "load_pair",
]
