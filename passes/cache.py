"""The passes' on-disk cache: JSON files under `mewe.fsutil.cache_dir("variants")`.

An entry's name is a digest of everything its value depends on, mewe's own pass code
included (`code_version`), so a stale entry is never found, only left behind. Entries are
written to a temporary file and renamed into place: readers see a whole file or none, and
concurrent writers of one key write the same bytes. Each entry carries the SHA-256 of its value
and its key: one that is truncated, damaged or moved does not load, and is made again. A hit
touches the entry, so `prune` removes the least recently used first.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import tempfile
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Iterator

from mewe.fsutil import cache_dir

_enabled = True  # off within `enabled(False)`: what --no-cache means for the passes themselves


@contextlib.contextmanager
def enabled(flag: bool) -> Iterator[None]:
    """Use the cache (or not) in this block."""
    global _enabled
    saved, _enabled = _enabled, flag
    try:
        yield
    finally:
        _enabled = saved


@lru_cache(maxsize=1)
def dist_versions() -> str:
    """mewe's, llvmlite's and z3's versions (reading a package's metadata takes a few ms)."""
    from mewe import __version__

    out = __version__
    for dist in ("llvmlite", "z3-solver"):
        with contextlib.suppress(PackageNotFoundError):
            out += f"{dist}={version(dist)}"
    return out


@lru_cache(maxsize=8)
def code_version(modules: tuple[str, ...] = ()) -> str:
    """A digest of the code that makes variants: mewe's passes, the `modules` of plugin passes,
    and the versions of mewe, llvmlite and z3."""
    h = hashlib.sha256(dist_versions().encode())
    files = sorted(Path(__file__).parent.glob("*.py"))
    files += [Path(f) for m in modules if (f := getattr(sys.modules.get(m), "__file__", None))]
    for f in files:
        h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()


def digest(*parts: Any) -> str:
    """The key of an entry: a digest of its `parts` (strings, numbers and tuples of them)."""
    return hashlib.sha256(repr(parts).encode()).hexdigest()


def _path(kind: str, key: str, root: str) -> Path:
    return cache_dir(root, *([kind] if kind else [])) / f"{key}.json"


def _checksum(key: str, value_text: str) -> str:
    return hashlib.sha256(f"{key}\0{value_text}".encode()).hexdigest()


def load(kind: str, key: str, root: str = "variants") -> Any | None:
    """The value stored under `key`, or None (missing, unreadable, damaged, or the cache is off).
    `root` names the cache under `mewe.fsutil.cache_dir`: the variant cache unless told."""
    if not _enabled:
        return None
    path = _path(kind, key, root)
    try:
        entry = json.loads(path.read_text())
        value_text = entry["value"]
        if not isinstance(value_text, str) or entry["sha256"] != _checksum(key, value_text):
            return None
        value = json.loads(value_text)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    with contextlib.suppress(OSError):
        os.utime(path)  # recently used: pruned last
    return value


def store(kind: str, key: str, value: Any, root: str = "variants") -> None:
    """Store `value` (JSON) under `key`, atomically; a cache that cannot be written is no error."""
    if not _enabled:
        return
    try:
        path = _path(kind, key, root)
        value_text = json.dumps(value, separators=(",", ":"))
        fd, tmp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump({"sha256": _checksum(key, value_text), "value": value_text}, fh, separators=(",", ":"))
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError:
        pass


# --- managing the cache (`mewe cache`) ------------------------------------------------------

def _entries() -> list[Path]:
    root = cache_dir("variants")
    return [p for p in root.rglob("*") if p.is_file()]


def info() -> tuple[Path, int, int]:
    """The cache's directory, its number of entries and their total size in bytes."""
    files = _entries()
    return cache_dir("variants"), len(files), sum(_size(p) for p in files)


def clear() -> int:
    """Remove every entry; returns how many bytes that freed."""
    return prune(0)


def prune(max_bytes: int) -> int:
    """Remove the least recently used entries until the cache holds at most `max_bytes`;
    returns how many bytes that freed. Leftover temporary files go first."""
    files = sorted(_entries(), key=lambda p: (not p.name.endswith(".tmp"), _mtime(p)))
    total = sum(_size(p) for p in files)
    freed = 0
    for p in files:
        if total - freed <= max_bytes:
            break
        size = _size(p)
        with contextlib.suppress(OSError):
            p.unlink()
            freed += size
    return freed


def _size(p: Path) -> int:
    try:
        return p.stat().st_size
    except OSError:
        return 0


def _mtime(p: Path) -> float:
    try:
        return p.stat().st_mtime
    except OSError:
        return 0.0
