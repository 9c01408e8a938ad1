"""Real resources obtained from PyPI packages (the Hub is not needed): the Qwen2.5-Coder 0.5B -> 1.5B pair and
the prompt sets (HumanEval 0-79, MT-Bench, ShareGPT). Used by the demo, the benchmark and the CLI."""

from .gguf import DRAFT, TARGET, ChecksumError, ChunkedGGUF
from .pair import MODELS, fetch_model, fetch_models, fetched_repo_id, load_pair
from .wheels import ChunkDownloadError, FetchError, MissingChunkFileError, default_cache_dir

__all__ = ["DRAFT", "MODELS", "TARGET", "ChecksumError", "ChunkDownloadError", "ChunkedGGUF", "FetchError",
           "MissingChunkFileError", "default_cache_dir", "fetch_model", "fetch_models", "fetched_repo_id", "load_pair"]
