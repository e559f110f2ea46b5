"""Where independent work runs: in this process, in local processes, or on a Dask cluster.

    results = executors.map_batches(func, items, executor=None, jobs=4)

`func` takes a list of items and returns one result per item; `map_batches` splits the items
into batches, runs them wherever `executor` says and returns the results in the items' order,
so the caller's output cannot depend on which executor ran it or how many workers it had.
Executors: None (local processes when there is enough work, else this process), "serial",
"local", or "dask://HOST[:PORT]" (the scheduler of a Dask distributed cluster). Workers are
processes, never threads: llvmlite's global LLVM state is not thread-safe.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Sequence
from urllib.parse import urlsplit

from mewe.errors import MeweError, raise_if_interrupted

SERIAL, LOCAL, DASK = "serial", "local", "dask"
MIN_PARALLEL = 16  # with executor None, fewer items than this run here: no process start-up
BATCHES_PER_WORKER = 4  # more batches than workers, so a slow batch does not hold up the rest
PROGRESS_MIN = 50  # show a progress bar (stderr being a terminal) from this many items
DASK_PORT = 8786
DASK_CONNECT_TIMEOUT = 10  # seconds to reach a scheduler before giving up


def parse(executor: str | None) -> tuple[str, str]:
    """(kind, address) of an executor spec: ("local", ""), ("serial", ""), ("dask", "tcp://HOST:PORT")."""
    if executor in (None, "", LOCAL, SERIAL):
        return executor or LOCAL, ""
    url = urlsplit(executor)
    try:
        port = url.port or DASK_PORT
    except ValueError:
        port = None
    if url.scheme != DASK or not url.hostname or port is None or url.path not in ("", "/") or url.query:
        raise MeweError(f"invalid executor '{executor}' (use local, serial or dask://HOST:PORT)")
    host = f"[{url.hostname}]" if ":" in url.hostname else url.hostname
    return DASK, f"tcp://{host}:{port}"


def map_batches(func: Callable[[list], list], items: Sequence[Any], *, executor: str | None = None,
                jobs: int | None = None, desc: str = "", progress: Callable[[int, int], None] | None = None) -> list:
    """`func(list(items))`, computed in batches where `executor` says; results in the items' order.
    `progress(done, total)` is called as batches finish; without it, a long run in a terminal
    shows a tqdm bar labelled `desc`."""
    kind, address = parse(executor)
    jobs = (os.cpu_count() or 1) if jobs is None else jobs
    if jobs < 1:
        raise MeweError("--jobs must be at least 1")
    if not items:
        return []
    with (_Callback(len(items), progress) if progress else _progress(len(items), desc)) as bar:
        if kind == SERIAL or (kind == LOCAL and (jobs == 1 or (not executor and len(items) < MIN_PARALLEL))):
            results = []
            for batch in _split(items, 1 if bar is None else len(items)):  # one item a batch only to move the bar
                raise_if_interrupted()
                results += func(batch)
                _tick(bar, len(batch))
            return results
        if kind == LOCAL:
            return _local(func, items, jobs, bar)
        return _dask(func, items, address, bar)


def _split(items: Sequence[Any], n: int) -> list[list]:
    """`n` batches of about equal size, each item's index recoverable: batch i holds items i, i+n, ..."""
    return [list(items[i::n]) for i in range(min(n, len(items)))]


def _merge(batches: list[list], n_items: int) -> list:
    """Undo `_split`: per-batch results back into the items' order."""
    out: list = [None] * n_items
    for i, results in enumerate(batches):
        out[i :: len(batches)] = results
    return out


def _local(func: Callable, items: Sequence[Any], jobs: int, bar) -> list:
    batches = _split(items, jobs * BATCHES_PER_WORKER)
    # spawn: a fresh interpreter per worker, never a fork of this process's LLVM state.
    results: list = [None] * len(batches)
    try:
        with ProcessPoolExecutor(min(jobs, len(batches)), mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(func, batch): i for i, batch in enumerate(batches)}
            for future in as_completed(futures):
                raise_if_interrupted()
                i = futures[future]
                results[i] = future.result()
                _tick(bar, len(batches[i]))
    except BrokenProcessPool:
        raise MeweError("a worker process died (a script that builds must guard its code with "
                        "`if __name__ == '__main__':`; or use the serial executor)") from None
    return _merge(results, len(items))


def _dask(func: Callable, items: Sequence[Any], address: str, bar) -> list:
    try:
        from distributed import Client, as_completed as dask_completed
    except ImportError:
        raise MeweError("the dask executor needs the 'distributed' package (pip install 'mewe[dask]')") from None
    try:
        client = Client(address, timeout=DASK_CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise MeweError(f"cannot reach the Dask scheduler at {address}: {reason}") from None
    with client:
        threads = sum(client.nthreads().values()) or 1
        batches = _split(items, threads * BATCHES_PER_WORKER)
        futures = client.map(func, batches, pure=False)
        index = {f.key: i for i, f in enumerate(futures)}
        results: list = [None] * len(batches)
        for future in dask_completed(futures, loop=client.loop):
            raise_if_interrupted()
            i = index[future.key]
            results[i] = future.result()
            _tick(bar, len(batches[i]))
    return _merge(results, len(items))


def _tick(bar, n: int) -> None:
    if bar is not None:
        bar.update(n)


class _Callback:
    """`progress(done, total)` behind the interface of a tqdm bar."""

    def __init__(self, total: int, progress: Callable[[int, int], None]):
        self.total, self.done, self.progress = total, 0, progress

    def __enter__(self):
        self.progress(0, self.total)
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n: int) -> None:
        self.done += n
        self.progress(self.done, self.total)


class _NoBar:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _progress(total: int, desc: str):
    """A tqdm bar on stderr for long runs in a terminal; else a context that yields None."""
    if total < PROGRESS_MIN or not desc or not sys.stderr.isatty():
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="fn", file=sys.stderr, leave=False)
