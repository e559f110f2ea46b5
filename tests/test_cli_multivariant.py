"""`mewe build --variants` end to end through the CLI: every example keeps its answers with
20 variants per function, settings files, `mewe passes`, and bad multivariant options."""

from __future__ import annotations

import json
import re

import pytest

from conftest import EXAMPLES, mewe
from test_examples import CASES


@pytest.fixture(scope="module")
def mv_examples(tmp_path_factory):
    out = tmp_path_factory.mktemp("mv")
    built = {}
    for name in ("base64", "hash", "interp", "sort"):
        res = mewe("build", EXAMPLES / f"{name}.c", "--variants", "20", "--seed", "5", "--max-cost", "0",
                   "-o", out / f"{name}.wasm")
        assert res.returncode == 0, res.stderr
        built[name] = out / f"{name}.wasm"
    return built


@pytest.mark.parametrize("name,args,stdin,stdout,code", CASES)
def test_examples_keep_their_answers_with_20_variants(mv_examples, name, args, stdin, stdout, code):
    for _ in range(3):  # a different path through the variants each run
        res = mewe("run", mv_examples[name], *args, stdin=stdin)
        assert (res.returncode, res.stdout) == (code, stdout), res.stderr


def test_every_function_gets_its_variants(mv_examples):
    for name, module in mv_examples.items():
        manifest = json.loads(module.with_name(f"{name}.manifest.json").read_text())
        functions = manifest["functions"]
        # Tiny functions admit few variants that survive codegen (op_mul is one multiply).
        skipped = [(f["name"], f["reason"]) for f in functions if f["status"] != "dispatched"]
        assert len(skipped) <= len(functions) // 10 and all(r == "no variant survived codegen" for _, r in skipped), skipped
        bodies = [f["variants"] for f in functions]
        assert max(bodies) == 21 and sum(bodies) >= 0.5 * 21 * len(bodies), bodies


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    for out, seed in (("a", "1"), ("b", "1"), ("c", "2")):
        (tmp_path / out).mkdir()
        res = mewe("build", EXAMPLES / "interp.c", "--variants", "3", "--seed", seed, "-o", tmp_path / out / "i.wasm")
        assert res.returncode == 0, res.stderr
    read = lambda d, f="i.wasm": (tmp_path / d / f).read_bytes()  # noqa: E731
    assert read("a") == read("b") and read("a", "i.manifest.json") == read("b", "i.manifest.json")
    assert read("a") != read("c")


def test_passes_lists_the_registry():
    res = mewe("passes")
    assert res.returncode == 0
    names = [line.split()[0] for line in res.stdout.decode().splitlines()]
    assert {"substitute", "swap-commutative", "shuffle-blocks"} <= set(names)


def test_settings_file_and_flags(tmp_path):
    (tmp_path / "mewe.toml").write_text('variants = 2\npasses = ["swap-commutative"]\nexclude = ["main"]\n')
    res = mewe("build", EXAMPLES / "hash.c", "-o", "h.wasm", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    manifest = json.loads((tmp_path / "h.manifest.json").read_text())
    assert manifest["variants_requested"] == 2
    assert {tuple(p) for f in manifest["functions"] for p in f["passes"]} <= {(), ("swap-commutative",)}
    # A flag beats the file.
    res = mewe("build", EXAMPLES / "hash.c", "--variants", "1", "-o", "h.wasm", cwd=tmp_path)
    assert json.loads((tmp_path / "h.manifest.json").read_text())["variants_requested"] == 1
    # pyproject.toml's [tool.mewe] is read when there is no mewe.toml.
    (tmp_path / "mewe.toml").unlink()
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "svc"\n[tool.mewe]\nvariants = 3\n')
    res = mewe("build", EXAMPLES / "hash.c", "-o", "h.wasm", cwd=tmp_path)
    assert res.returncode == 0 and json.loads((tmp_path / "h.manifest.json").read_text())["variants_requested"] == 3


@pytest.mark.parametrize("setting,message", [
    ("variants = 'many'", "'variants' must be an integer"),
    ("colour = 3", "unknown setting 'colour'"),
    ("policy = 'sometimes'", "invalid policy 'sometimes'"),
    ("variants = [", "invalid TOML"),
])
def test_bad_settings_are_one_line(tmp_path, setting, message):
    (tmp_path / "mewe.toml").write_text(setting + "\n")
    res = mewe("build", EXAMPLES / "hash.c", "-o", "h.wasm", cwd=tmp_path)
    assert res.returncode == 1 and message in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "h.wasm").exists()


@pytest.mark.parametrize("args,message", [
    (["--passes", "no-such-pass", "--variants", "2"], "unknown pass 'no-such-pass'"),
    (["--policy", "pinned:x", "--variants", "2"], "invalid policy 'pinned:x'"),
    (["--variants", "-1"], "argument --variants: must be 0 or more, got -1"),
    (["--variants", "2", "--rerandomize", "every:0"], "invalid re-randomization mode 'every:0'"),
    (["--variants", "2", "--rerandomize", "sometimes"], "invalid re-randomization mode 'sometimes'"),
    (["--variants", "200"], "argument --variants: must be at most 127"),
    (["--variants", "2", "--max-cost", "-1"], "argument --max-cost: must be 0 (any) or a positive ratio"),
    (["--variants", "2", "--jobs", "0"], "argument --jobs: must be at least 1"),
    (["--dispatch", "jump"], "invalid choice: 'jump'"),
])
def test_bad_multivariant_options(tmp_path, args, message):
    """A bad option value is a usage error whatever is wrong with it: one line, exit 2."""
    res = mewe("build", EXAMPLES / "hash.c", *args, "-o", tmp_path / "h.wasm")
    assert res.returncode == 2 and message in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert res.stderr.startswith("mewe build: error: argument --") or "invalid choice" in res.stderr
    assert not (tmp_path / "h.wasm").exists()


def test_profile_bounds_only_hot_functions(tmp_path):
    """--profile TRACE: --max-cost bounds the functions the traced runs called often; the rest
    keep any variant. A file that is not a trace is one error line."""
    traced = tmp_path / "traced.wasm"
    assert mewe("build", EXAMPLES / "interp.c", "--variants", "4", "--trace", "-o", traced).returncode == 0
    run = mewe("run", "--trace", tmp_path / "profile.jsonl", traced, stdin=b"print fib(15)\n")
    assert run.returncode == 0 and run.stdout == b"610\n"
    manifests = {}
    for name, extra in (("bounded", []), ("profiled", ["--profile", tmp_path / "profile.jsonl"])):
        res = mewe("build", EXAMPLES / "interp.c", "--variants", "4", *extra, "-o", tmp_path / f"{name}.wasm")
        assert res.returncode == 0, res.stderr
        manifests[name] = {f["name"]: f for f in json.loads((tmp_path / f"{name}.manifest.json").read_text())["functions"]}
    hot = {json.loads(line)["function"] for line in (tmp_path / "profile.jsonl").read_text().splitlines()}
    assert "fib_rec" in hot and "op_mod" not in hot
    for name, f in manifests["profiled"].items():
        if name in hot:  # the same bound, so the same choice
            assert f["variants"] == manifests["bounded"][name]["variants"], name
        else:
            assert f["variants"] >= manifests["bounded"][name]["variants"], name
    assert sum(f["variants"] for f in manifests["profiled"].values()) > sum(f["variants"] for f in manifests["bounded"].values())
    (tmp_path / "bad.jsonl").write_text("not json\n")
    bad = mewe("build", EXAMPLES / "interp.c", "--variants", "2", "--profile", tmp_path / "bad.jsonl", "-o", tmp_path / "x.wasm")
    assert bad.returncode == 1 and "bad.jsonl:1: not a dispatch trace line" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and not (tmp_path / "x.wasm").exists()


BROKEN_PASSES = '''
from mewe.passes import Pass
from mewe.passes.ir import Instr


class UndefinedUse(Pass):
    name = "undefined-use"
    description = "adds a use of a value that is never defined (invalid IR, on purpose)"

    def apply(self, fn, rng):
        entry = fn.blocks[0]
        entry.instrs.insert(entry.phi_count, Instr("add", fn.fresh("bad"), ty="i32", args=["%nowhere", "1"]))
        return True


class Raises(Pass):
    name = "raises"
    description = "fails with an exception (on purpose)"

    def apply(self, fn, rng):
        raise KeyError("no such block")
'''


@pytest.fixture
def broken_passes(tmp_path):
    from conftest import write_pass_plugin

    plugins = tmp_path / "plugins"
    plugins.mkdir()
    write_pass_plugin(plugins, "mewe_broken", BROKEN_PASSES, "undefined-use", "UndefinedUse")
    with open(plugins / "mewe_broken-1.0.dist-info" / "entry_points.txt", "a") as f:
        f.write("raises = mewe_broken:Raises\n")
    import os

    return {**os.environ, "PYTHONPATH": str(plugins)}


def test_invalid_variants_are_blamed_on_their_pass(tmp_path, broken_passes):
    src = EXAMPLES / "sort.c"
    out = tmp_path / "sort.wasm"
    r = mewe("build", src, "--variants", "2", "--passes", "undefined-use", "--no-cache", "-o", out, env=broken_passes)
    assert r.returncode == 0, r.stderr
    manifest = json.loads(out.with_name("sort.manifest.json").read_text())
    functions = manifest["functions"]
    assert all(f["status"] == "skipped" and f["reason"].startswith("no valid variants") for f in functions)
    drops = [d for f in functions for d in f["drops"]]
    assert drops and all(d.startswith("undefined-use: ") and "%nowhere" in d for d in drops), drops[:3]
    assert manifest["totals"]["invalid"] == len(drops)
    lines = r.stderr.strip().splitlines()
    assert lines[0] == f"mewe: {len(drops)} variants of {len(functions)} functions dropped as invalid IR; see the manifest (or -v)"
    assert len(lines) == 2 and lines[1].startswith(f"mewe: wrote {out} (0 of {len(functions)} functions dispatched, 0 bodies")
    verbose = mewe("build", src, "--variants", "2", "--passes", "undefined-use", "-o", out, "-v", env=broken_passes)
    assert "use of undefined value '%nowhere'" in verbose.stderr


def test_a_pass_that_raises_is_one_line_naming_it(tmp_path, broken_passes):
    out = tmp_path / "sort.wasm"
    r = mewe("build", EXAMPLES / "sort.c", "--variants", "2", "--passes", "raises", "--no-cache", "-o", out,
             env=broken_passes)
    assert r.returncode == 1 and not out.exists()
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert r.stderr.startswith("mewe: error: pass 'raises' failed on function @") and "KeyError" in r.stderr


def test_verify_each_names_the_pass_that_broke_a_variant(tmp_path, broken_passes):
    out = tmp_path / "sort.wasm"
    r = mewe("build", EXAMPLES / "sort.c", "--variants", "1", "--passes", "swap-commutative,undefined-use,shuffle-blocks",
             "--verify-each", "-o", out, env=broken_passes)
    assert r.returncode == 0, r.stderr
    drops = [d for f in json.loads(out.with_name("sort.manifest.json").read_text())["functions"] for d in f["drops"]]
    # passes that did not apply to a function are not in its list
    assert drops and all(d.endswith(": invalid after undefined-use: use of undefined value '%nowhere'") for d in drops)
    assert any(d.startswith("swap-commutative,undefined-use,shuffle-blocks: ") for d in drops), drops[:2]


def test_build_passes_compiler_flags_it_does_not_own_to_clang(tmp_path):
    src = tmp_path / "w.c"
    src.write_text('#include <stdio.h>\nint main(void) { int unused; printf("ok\\n"); return 0; }\n')
    out = tmp_path / "w.wasm"
    warned = mewe("build", "-Wall", "-std=gnu11", "-fno-strict-aliasing", "-g", src, "-o", out)
    assert warned.returncode == 0 and "unused variable 'unused'" in warned.stderr
    assert mewe("run", out).stdout == b"ok\n"
    quiet = mewe("build", "-w", "-Wall", src, "-o", out, "--variants", "2")
    assert quiet.returncode == 0 and "warning" not in quiet.stderr
    bad = mewe("build", "--bogus", src)
    assert bad.returncode == 2 and "unrecognized arguments: --bogus" in bad.stderr
    assert mewe("inspect", "-Wall", out).returncode == 2  # only build takes compiler flags


def test_preprocessed_sources_build(tmp_path):
    pre = tmp_path / "pre.i"
    pre.write_text('# 1 "pre.c"\nint printf(const char *, ...);\nint main(void) { printf("%d\\n", 6 * 7); return 0; }\n')
    r = mewe("build", pre, "-o", tmp_path / "pre.wasm", "--variants", "2")
    assert r.returncode == 0 and r.stderr.count("\n") == 1, r.stderr  # no warnings: only the summary
    assert mewe("run", tmp_path / "pre.wasm").stdout == b"42\n"


def test_a_successful_build_says_what_it_wrote_in_one_line(tmp_path):
    src = EXAMPLES / "hash.c"
    for args, pattern in (((), r"mewe: wrote \S+hash\.wasm \(\d+ KB\)"),
                          (("--variants", "2"), r"mewe: wrote \S+hash\.wasm \((\d+) of (\d+) functions dispatched, "
                                                r"(\d+) bodies, \d+ KB\)")):
        res = mewe("build", src, "-o", tmp_path / "hash.wasm", *args)
        assert res.returncode == 0
        lines = res.stderr.splitlines()
        assert len(lines) == 1 and re.fullmatch(pattern, lines[0]), res.stderr
        size = (tmp_path / "hash.wasm").stat().st_size
        assert f"({round(size / 1024):,} KB)" in lines[0] or f", {round(size / 1024):,} KB)" in lines[0]
    manifest = json.loads((tmp_path / "hash.manifest.json").read_text())
    dispatched, functions, bodies = map(int, re.fullmatch(pattern, lines[0]).groups())
    assert (dispatched, functions, bodies) == (manifest["totals"]["dispatched"], manifest["totals"]["functions"],
                                               manifest["totals"]["bodies"])


def test_a_build_on_a_terminal_shows_its_progress(tmp_path):
    """On a terminal, stages, functions done and elapsed seconds are shown on one line rewritten
    in place, cleared before the summary; through a pipe, only the summary (test above)."""
    import os
    import pty
    import subprocess
    import sys

    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "mewe", "build", EXAMPLES / "interp.c", "--variants", "2",
                             "--no-cache", "-o", tmp_path / "interp.wasm"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    os.close(master)
    assert proc.wait(300) == 0
    text = seen.decode()
    updates = [u for u in text.replace("\r\n", "\n").split("\r\x1b[K") if u]
    assert re.fullmatch(r"mewe: making variants 0/15 functions \(\d+ s\)", updates[1]), updates
    assert any(re.fullmatch(r"mewe: making variants 15/15 functions \(\d+ s\)", u) for u in updates)
    assert "mewe: linking and generating code" in text
    assert re.fullmatch(r"mewe: wrote \S+interp\.wasm \(15 of 15 functions dispatched, \d+ bodies, \d+ KB\)\n", updates[-1])
