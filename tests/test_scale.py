"""Throughput machinery: executors (serial, local processes, Dask) give the same bytes; the
variant cache regenerates only what changed and shrugs off damaged entries; bad executors are
one-line errors."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

import mewe
from mewe import executors, frontends, linker
from mewe.errors import MeweError
from mewe.fsutil import cache_dir
from mewe.passes import diversify, driver
from mewe.toolchain import find_toolchain

from conftest import EXAMPLES, mewe as run_cli

INTERP = EXAMPLES / "interp.c"


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """A fresh variant cache (worker processes started afterwards inherit it); the wasi-libc
    that zig built stays where it is."""
    path = tmp_path / "cache"
    path.mkdir()
    (path / "zig").symlink_to(cache_dir("zig"), target_is_directory=True)
    monkeypatch.setenv("MEWE_CACHE_DIR", str(path))
    return path / "variants"


def _build(directory: Path, **options) -> tuple[bytes, bytes]:
    directory.mkdir()
    mv = mewe.MultivariantOptions(variants=3, seed=5, **options)
    result = mewe.build([INTERP], directory / "interp.wasm", multivariant=mv)  # one name: it is in the module
    return result.output.read_bytes(), result.manifest_path.read_bytes()


def test_every_executor_gives_the_same_bytes(tmp_path, cache):
    from distributed import LocalCluster

    serial = _build(tmp_path / "serial", executor="serial", cache=False)
    local = _build(tmp_path / "local", executor="local", jobs=2, cache=False)
    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None) as cluster:
        address = cluster.scheduler_address.removeprefix("tcp://")
        dask = _build(tmp_path / "dask", executor=f"dask://{address}", cache=False)
    assert serial == local == dask
    assert not cache.exists()  # cache=False wrote nothing
    assert _build(tmp_path / "cached", executor="serial") == serial  # made through the cache


def test_a_different_seed_gives_a_different_binary(tmp_path, cache):
    wasm5, manifest5 = _build(tmp_path / "seed5", executor="serial")
    directory = tmp_path / "seed6"
    directory.mkdir()
    result = mewe.build([INTERP], directory / "interp.wasm",
                        multivariant=mewe.MultivariantOptions(variants=3, seed=6, executor="serial"))
    assert result.output.read_bytes() != wasm5
    passes5 = [f["passes"] for f in json.loads(manifest5)["functions"]]
    assert [f.passes for f in result.manifest.functions] != passes5  # other variants, not only other bytes


def _module(source: Path):
    return linker.link_modules([frontends.load_source(source, mewe.CompileOptions(), find_toolchain())])


def _counting(monkeypatch) -> list[str]:
    """The names of the functions diversified (not taken from the cache) from now on."""
    made: list[str] = []
    original = driver._variants

    def counted(fn, name, *args):
        made.append(name)
        return original(fn, name, *args)

    monkeypatch.setattr(driver, "_variants", counted)
    return made


def test_the_cache_regenerates_only_what_changed(tmp_path, cache, monkeypatch):
    made = _counting(monkeypatch)
    run = dict(variants=4, seed=3, executor="serial")
    first = diversify(_module(INTERP), **run)
    entries = sorted(cache.glob("*.json"))
    assert len(made) == len(entries) > 10

    made.clear()
    assert diversify(_module(INTERP), **run) == first
    assert made == []  # every function from the cache

    changed = tmp_path / "interp.c"
    changed.write_text(INTERP.read_text().replace("n < 2 ? n", "n < 3 ? n", 1))
    second = diversify(_module(changed), **run)
    assert made == ["fib_rec"]
    assert {f: v for f, v in second.items() if f != "fib_rec"} == {f: v for f, v in first.items() if f != "fib_rec"}

    made.clear()
    assert diversify(_module(INTERP), **dict(run, seed=4)) != first  # the seed is in the key
    assert len(made) == len(entries)
    # synthesize's proofs are cached too (a random stack need not pick it: ask for it, with the
    # proofs earlier tests left in memory forgotten)
    from mewe.passes import synthesize

    monkeypatch.setattr(synthesize, "_cache", {})
    assert diversify(_module(INTERP), **dict(run, passes=("synthesize",)))
    assert any((cache / "proofs").glob("*.json"))


def test_a_damaged_cache_entry_is_made_again(cache, monkeypatch):
    from mewe.passes import synthesize

    made = _counting(monkeypatch)
    run = dict(variants=2, seed=9, executor="serial", include=["op_*"])
    first = diversify(_module(INTERP), **run)
    entries = sorted(cache.glob("*.json"))
    entries[0].write_text('{"truncated": ')
    entries[1].write_text('[["define i32 @f() {", 7]]')
    for proof in (cache / "proofs").glob("*.json"):
        proof.write_text("[[1, 2]]")
    monkeypatch.setattr(synthesize, "_cache", {})  # proofs from the disk, not from this process
    made.clear()
    assert diversify(_module(INTERP), **run) == first
    assert len(made) == 2
    assert json.loads(entries[0].read_text())  # and repaired


@pytest.mark.parametrize("url", ["dask:/host:8786", "ftp://host:1", "dask://host:port", "dask://", "threads"])
def test_a_bad_executor_is_an_error(url):
    with pytest.raises(MeweError, match="invalid executor"):
        executors.parse(url)


def test_an_unreachable_scheduler_is_one_line(tmp_path, cache, monkeypatch):
    monkeypatch.setattr(executors, "DASK_CONNECT_TIMEOUT", 2)
    with pytest.raises(MeweError, match=r"cannot reach the Dask scheduler at tcp://127\.0\.0\.1:9") as err:
        diversify(_module(INTERP), variants=1, seed=0, executor="dask://127.0.0.1:9")
    assert "\n" not in str(err.value)


def test_bad_build_options_fail_before_compiling(tmp_path):
    for flags, message in ((["--executor", "dask:/x"], "argument --executor: invalid executor 'dask:/x'"),
                           (["--jobs", "0"], "argument --jobs: must be at least 1")):
        res = run_cli("build", tmp_path / "missing.c", "--variants", "1", *flags, cwd=tmp_path)
        assert res.returncode == 2 and res.stderr.startswith(f"mewe build: error: {message}"), res.stderr
        assert res.stderr.count("\n") == 1


def test_the_progress_bar_only_in_a_terminal(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    items = list(range(executors.PROGRESS_MIN))
    for stream, shown in ((io.StringIO(), False), (Terminal(), True)):
        monkeypatch.setattr("sys.stderr", stream)
        assert executors.map_batches(list, items, executor="serial", desc="variants") == items
        assert ("variants" in stream.getvalue()) == shown


def test_damaged_entries_never_change_the_output_and_the_cache_can_be_bounded(tmp_path, cache):
    """An entry that is valid JSON but whose content changed (a flipped constant in a variant's
    IR, which would still verify) fails its checksum and is made again: the build equals a
    --no-cache build. `mewe cache` reports, prunes and clears."""
    reference = _build(tmp_path / "fresh", executor="serial", cache=False)
    _build(tmp_path / "warm", executor="serial")
    entries = [p for p in cache.glob("*.json") if '"value"' in p.read_text()]
    assert entries
    for entry in entries:  # change a digit inside every stored value, keeping the JSON valid
        data = json.loads(entry.read_text())
        text = data["value"]
        k = next(i for i, ch in enumerate(text) if ch.isdigit())
        data["value"] = text[:k] + str((int(text[k]) + 1) % 10) + text[k + 1:]
        entry.write_text(json.dumps(data))
    (cache / ".half-written.tmp").write_text("{")
    assert _build(tmp_path / "damaged", executor="serial") == reference
    info = run_cli("cache", "info")
    assert info.returncode == 0 and " entries, " in info.stdout.decode()
    total = sum(p.stat().st_size for p in cache.rglob("*") if p.is_file())
    assert run_cli("cache", "prune", "--max-size", str(total // 2)).returncode == 0
    assert 0 < sum(p.stat().st_size for p in cache.rglob("*") if p.is_file()) <= total // 2
    assert not (cache / ".half-written.tmp").exists()  # leftovers go first
    assert run_cli("cache", "clear").returncode == 0 and not any(p.is_file() for p in cache.rglob("*"))
    assert run_cli("cache", "prune").returncode == 1  # needs --max-size
