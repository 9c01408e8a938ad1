"""Folders the package writes: per-file checksums, atomic publication of a finished folder, and removal of
only the entries the package itself wrote (a user's files in the same folder are never touched)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from .io import FileFormatError, sha256_file


def fsync_tree(folder: str | os.PathLike) -> None:
    """Flush every file under `folder` (and the folder entries) to disk, so a rename after it is durable."""
    folder = Path(folder)
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some platforms cannot open folders
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def file_checksums(folder: str | os.PathLike, prefix: str = "") -> dict[str, str]:
    """{relative posix name: sha256} of every file under `folder` (names prefixed with `prefix`)."""
    folder = Path(folder)
    return {prefix + path.relative_to(folder).as_posix(): sha256_file(path)
            for path in sorted(folder.rglob("*")) if path.is_file()}


def verify_checksums(folder: str | os.PathLike, expected: dict[str, str], what: str, prefix: str = "") -> None:
    """Raise FileFormatError naming the first recorded file under `folder` that is missing or changed.

    `expected` maps `prefix + relative name` to sha256, as `file_checksums(folder, prefix)` returned it; its
    entries with other prefixes are ignored, and so are files that were not recorded (cache files, say).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileFormatError(f"{what}: folder {folder} is missing")
    found = {prefix + p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()}
    mine = {name: digest for name, digest in expected.items() if name.startswith(prefix)}
    for name, digest in sorted(mine.items()):
        if name not in found:
            raise FileFormatError(f"{what}: file {folder / name[len(prefix):]} is missing")
        if sha256_file(found[name]) != digest:
            raise FileFormatError(f"{what}: file {found[name]} is damaged (its checksum does not match the one "
                                  "recorded when it was written)")


def publish_folder(tmp: str | os.PathLike, final: str | os.PathLike) -> None:
    """Make the finished folder `tmp` appear as `final` in one rename (`final` must not exist)."""
    tmp, final = Path(tmp), Path(final)
    fsync_tree(tmp)
    os.replace(tmp, final)
    _fsync_dir(final.parent)


def remove_entries(folder: str | os.PathLike, names: Iterable[str]) -> None:
    """Delete exactly the files/folders `names` inside `folder` (missing ones are skipped)."""
    folder = Path(folder)
    for name in names:
        path = folder / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def local_folder(name: str | os.PathLike, what: str) -> str | None:
    """`name` when it is a local folder, None when it can only be a Hub repo id; raise when it names a file or a
    missing folder (a typo), instead of sending a path to the Hub as a repo id.

    A name counts as a path when it is absolute, starts with `.` or `~`, holds a backslash or more than one `/`,
    or its first component is a local folder (`models/typo` next to `models/`).

    Args:
        name: a local folder or a Hub repo id (`name` or `namespace/name`).
        what: what the folder should hold, for the error message ("acceptance head", "model").

    Returns:
        The folder as given, or None for a Hub repo id.
    """
    text = os.fspath(name)
    if os.path.isdir(text):
        return text
    if os.path.exists(text):
        raise NotADirectoryError(f"{text} is a file, not a folder: pass the {what} folder that holds its "
                                 "config.json (or a Hub repo id)")
    first, sep, _ = text.partition("/")
    if (os.path.isabs(text) or text.startswith((".", "~")) or "\\" in text or text.count("/") > 1
            or text.endswith("/") or (sep and os.path.isdir(first))):
        where = os.path.abspath(os.path.expanduser(text))
        raise FileNotFoundError(f"No such {what} folder: {text}" + (f" (looked in {where})" if where != text else ""))
    return None
