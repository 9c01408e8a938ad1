"""Reading and writing the files the package owns: atomic writes, checksums, and errors that name the file."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any


class FileFormatError(ValueError):
    """A file exists but cannot be used: corrupt JSON, wrong types, a checksum mismatch. The message names it."""


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` through a temporary file and a rename: readers never see half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # a full disk, a directory in the way, ...: leave no temporary file behind
        with contextlib.suppress(OSError):  # e.g. no such folder: then there is no file either
            tmp.unlink()
        raise


def readable_by_others(path: str | os.PathLike) -> None:
    """Give a file the mode an ordinary `open()` would (0644 under the usual umask 022): safetensors writes its
    files with mode 0600, which other users, and a pushed or shared head folder, could not read."""
    os.chmod(path, 0o666 & ~_umask())


def _umask() -> int:
    global _UMASK
    if _UMASK is None:
        _UMASK = os.umask(0o022)  # read the umask (set and restored at once; done once per process)
        os.umask(_UMASK)
    return _UMASK


_UMASK: int | None = None


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write JSON atomically (sorted keys, indented)."""
    text = json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"
    write_bytes_atomic(path, text.encode("utf-8"))


def read_json(path: str | os.PathLike, what: str = "JSON file") -> Any:
    """Parse a JSON file; a missing, non-UTF-8 or corrupt file raises an error naming it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} not found: {path}") from None
    except UnicodeDecodeError as err:
        raise FileFormatError(f"{what} {path} is not UTF-8 text ({err.reason} at byte {err.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise FileFormatError(f"{what} {path} is not valid JSON: {err.msg} (line {err.lineno}, column {err.colno})") from None


def read_json_object(path: str | os.PathLike, what: str = "JSON file") -> dict:
    """`read_json` for files that must hold one JSON object."""
    data = read_json(path, what)
    if not isinstance(data, dict):
        raise FileFormatError(f"{what} {path} must hold a JSON object, got {type(data).__name__}")
    return data


def sha256_file(path: str | os.PathLike, block: int = 8 << 20) -> str:
    """Hex sha256 of a file, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_tree(folder: str | os.PathLike) -> str:
    """Hex sha256 over every file under `folder` (relative names and contents, in sorted order)."""
    folder = Path(folder)
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode())
        digest.update(sha256_file(path).encode())
    return digest.hexdigest()


def diff_settings(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Human-readable differences between two nested dicts (for 'cannot resume: settings differ' errors)."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, "<unset>"), new.get(key, "<unset>")
        if isinstance(a, dict) and isinstance(b, dict):
            out.extend(diff_settings(a, b, prefix=f"{prefix}{key}."))
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} (existing) vs {b!r} (now)")
    return out
