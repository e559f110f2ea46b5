"""Output files that appear whole or not at all: write to a temp file beside the target, then rename."""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path
from typing import Iterator, Sequence

from .errors import MeweError, raise_if_interrupted

# Errors that say the output's file system cannot take it (full, over quota, read-only, too big).
STORAGE_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EACCES, errno.EPERM}


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, mode: int = 0o644) -> Iterator[Path]:
    """Yield a temporary path in `path`'s directory; rename it onto `path` if the block succeeds.

    On any failure the temporary file is removed and `path` is left as it was.
    """
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise MeweError(f"cannot write output '{target}': it is a directory")
    if target.exists() and not target.is_file():  # /dev/null, a FIFO: write through, never replace it
        with tempfile.TemporaryDirectory(prefix="mewe-out-") as scratch:
            tmp = Path(scratch) / target.name
            yield tmp
            raise_if_interrupted()
            with open(target, "wb") as out:
                out.write(tmp.read_bytes())
        return
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise MeweError(f"cannot write output '{target}': {exc.strerror or exc}") from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        raise_if_interrupted()
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError) and exc.errno in STORAGE_ERRORS:
            raise MeweError(f"cannot write output '{target}': {exc.strerror}") from None
        raise


def write_outputs(files: Sequence[tuple[str | os.PathLike, bytes, int]]) -> None:
    """Write several (path, data, mode) outputs that belong together (a module and its
    manifest): every one is written to its temp file before any is renamed into place, so a
    full disk leaves none of them new."""
    with contextlib.ExitStack() as stack:
        temps = [(stack.enter_context(atomic_output(path, mode)), data) for path, data, mode in files]
        for tmp, data in temps:
            tmp.write_bytes(data)


def write_atomic(path: str | os.PathLike, data: bytes, mode: int = 0o644) -> None:
    """Write `data` to `path` through `atomic_output`."""
    with atomic_output(path, mode) as tmp:
        tmp.write_bytes(data)


def cache_dir(*parts: str) -> Path:
    """A per-user cache directory for mewe (outside any repository), created on demand."""
    base = os.environ.get("MEWE_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "mewe"
    )
    path = Path(base, *parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
