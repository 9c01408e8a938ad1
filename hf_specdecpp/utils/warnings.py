"""Warnings shown once per process per key."""

from __future__ import annotations

import threading
import warnings

_SEEN: set[str] = set()
_LOCK = threading.Lock()


def warn_once(key: str, message: str, category: type[Warning] = UserWarning, stacklevel: int = 3) -> bool:
    """Issue `message` the first time `key` is seen in this process; return whether it was issued."""
    with _LOCK:
        if key in _SEEN:
            return False
        _SEEN.add(key)
    warnings.warn(message, category, stacklevel=stacklevel)
    return True


def reset_warnings() -> None:
    """Forget which warnings were issued (tests)."""
    with _LOCK:
        _SEEN.clear()
