"""The passes' on-disk cache: JSON files under `mewe.fsutil.cache_dir("variants")`.

An entry's name is a digest of everything its value depends on, mewe's own pass code
included (`code_version`), so a stale entry is never found, only left behind. Entries are
written to a temporary file and renamed into place: readers see a whole file or none, and
concurrent writers of one key write the same bytes. An entry that does not load is missing.
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


@lru_cache(maxsize=8)
def code_version(modules: tuple[str, ...] = ()) -> str:
    """A digest of the code that makes variants: mewe's passes, the `modules` of plugin passes,
    and the versions of mewe, llvmlite and z3."""
    from mewe import __version__

    h = hashlib.sha256(__version__.encode())
    for dist in ("llvmlite", "z3-solver"):
        with contextlib.suppress(PackageNotFoundError):
            h.update(f"{dist}={version(dist)}".encode())
    files = sorted(Path(__file__).parent.glob("*.py"))
    files += [Path(f) for m in modules if (f := getattr(sys.modules.get(m), "__file__", None))]
    for f in files:
        h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()


def digest(*parts: Any) -> str:
    """The key of an entry: a digest of its `parts` (strings, numbers and tuples of them)."""
    return hashlib.sha256(repr(parts).encode()).hexdigest()


def _path(kind: str, key: str) -> Path:
    return cache_dir("variants", *([kind] if kind else [])) / f"{key}.json"


def load(kind: str, key: str) -> Any | None:
    """The value stored under `key`, or None (missing, unreadable, or the cache is off)."""
    if not _enabled:
        return None
    try:
        return json.loads(_path(kind, key).read_text())
    except (OSError, ValueError):
        return None


def store(kind: str, key: str, value: Any) -> None:
    """Store `value` (JSON) under `key`, atomically; a cache that cannot be written is no error."""
    if not _enabled:
        return
    try:
        path = _path(kind, key)
        fd, tmp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(value, fh, separators=(",", ":"))
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError:
        pass
