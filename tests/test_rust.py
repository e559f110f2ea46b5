"""The Rust frontend, with the real rustc and cargo the Makefile installs: a single-file program,
a cargo workspace written for these tests (a library crate, a binary crate, a crate from the
registry), and the QR endpoints of services/qr -- each diversified, run, and compared with
rustc's own build of the same code."""

from __future__ import annotations

import hashlib
import json
import shutil
import textwrap
from pathlib import Path

import pytest

import mewe
from mewe.frontends.rust import WASM_TARGETS, find_rust_toolchain

from conftest import ROOT, mewe as mewe_cli

pytestmark = pytest.mark.slow  # `pytest -m 'not slow'` leaves these out

QR_INPUTS = [b"hello", b"https://example.org/multivariant-execution-at-the-edge", b"0123456789" * 12,
             b"MEWE 2026 EDGE", bytes(range(256)), "qr \u00e9t\u00e9 \u2764".encode()]
QR_LEVELS = [(), ("L",), ("H",)]


def run(module: Path, args, data: bytes, tmp: Path, **kw) -> tuple[int, bytes]:
    """Run `module` on `data`; its exit status and stdout."""
    (tmp / "in").write_bytes(data)
    status = mewe.run(module, list(args), stdin=tmp / "in", stdout=tmp / "out", stderr=tmp / "err", **kw)
    return status, (tmp / "out").read_bytes()


def dispatched_share(result: mewe.BuildResult) -> float:
    totals = result.manifest.totals()
    return totals["dispatched"] / totals["functions"]


@pytest.fixture(scope="module")
def toolchain():
    return find_rust_toolchain()  # fails with the install command when there is none


def test_toolchain_is_found(toolchain):
    assert toolchain.target in WASM_TARGETS and toolchain.cargo and toolchain.llvm_major >= 14


def test_missing_toolchain_is_one_clear_error(tmp_path):
    (tmp_path / "m.rs").write_text("fn main() {}\n")
    res = mewe_cli("build", tmp_path / "m.rs", env={"PATH": "/usr/bin:/bin", "MEWE_RUSTC": "/nonexistent/rustc"},
                   cwd=tmp_path)
    assert res.returncode == 1
    assert res.stderr.count("\n") == 1 and "no Rust toolchain with a wasm32-wasi standard library" in res.stderr
    assert "apt-get install rustc cargo libstd-rust-dev-wasm32" in res.stderr
    assert not (tmp_path / "m.wasm").exists()


SINGLE = r'''
use std::collections::BTreeMap;
use std::io::Read;

fn collatz(mut n: u64) -> u32 {
    let mut steps = 0;
    while n != 1 { n = if n % 2 == 0 { n / 2 } else { 3 * n + 1 }; steps += 1; }
    steps
}

fn main() {
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text).unwrap();
    let mut counts: BTreeMap<char, usize> = BTreeMap::new();
    for c in text.chars().filter(|c| c.is_alphanumeric()) { *counts.entry(c.to_ascii_lowercase()).or_default() += 1; }
    let limit: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(30);
    let longest = (1..=limit).max_by_key(|&n| (collatz(n), n)).unwrap();
    let mut words: Vec<&str> = text.split_whitespace().collect();
    words.sort_unstable_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
    println!("{:?}", counts);
    println!("longest collatz below {}: {} ({} steps)", limit, longest, collatz(longest));
    println!("{}", words.join(","));
}
'''


def test_single_file_program_matches_rustc(toolchain, tmp_path):
    source = tmp_path / "stats.rs"
    source.write_text(SINGLE)
    plain = mewe.build([source], tmp_path / "plain.wasm")
    mv = mewe.build([source], tmp_path / "mv.wasm", multivariant=mewe.MultivariantOptions(variants=1, seed=5))
    assert dispatched_share(mv) >= 0.9
    for args, data in ((["30"], b"the quick brown fox jumps over the lazy dog"), (["97"], b"Edge nodes, WASM, MEWE!")):
        expected = run(plain.output, args, data, tmp_path)
        assert expected[0] == 0 and b"longest collatz" in expected[1]
        for seed in (1, 2, 3):
            assert run(mv.output, args, data, tmp_path, policy=f"seeded:{seed}") == expected


# --- a cargo workspace: library crate + binary crate + a registry crate ------------------------

WORKSPACE = {
    "Cargo.toml": """
        [workspace]
        members = ["textstats", "app"]
    """,
    "textstats/Cargo.toml": """
        [package]
        name = "textstats"
        version = "0.1.0"
        edition = "2021"
    """,
    "textstats/src/lib.rs": """
        //! Word statistics over a text.
        use std::collections::HashMap;

        pub struct Stats { pub words: usize, pub lines: usize, pub top: Vec<(String, usize)> }

        pub fn fnv1a(data: &[u8]) -> u64 {
            data.iter().fold(0xcbf29ce484222325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x100000001b3))
        }

        pub fn stats(text: &str, keep: usize) -> Stats {
            let mut freq: HashMap<String, usize> = HashMap::new();
            for w in text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
                *freq.entry(w.to_lowercase()).or_insert(0) += 1;
            }
            let mut top: Vec<(String, usize)> = freq.into_iter().collect();
            top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            top.truncate(keep);
            Stats { words: text.split_whitespace().count(), lines: text.lines().count(), top }
        }
    """,
    "app/Cargo.toml": """
        [package]
        name = "app"
        version = "0.1.0"
        edition = "2021"

        [dependencies]
        textstats = { path = "../textstats" }
        checked_int_cast = "1"

        [[bin]]
        name = "wordfreq"
        path = "src/main.rs"

        [[bin]]
        name = "checksum"
        path = "src/checksum.rs"
    """,
    "app/src/main.rs": """
        use checked_int_cast::CheckedIntCast;
        use std::io::Read;

        fn main() {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).expect("utf-8 input");
            let keep: usize = std::env::args().nth(1).map(|a| a.parse().expect("a count")).unwrap_or(3);
            let s = textstats::stats(&text, keep);
            println!("{} words, {} lines, fnv {:016x}", s.words, s.lines, textstats::fnv1a(text.as_bytes()));
            for (word, n) in s.top {
                let small = n.as_u8_checked().map(|v| v.to_string()).unwrap_or_else(|| "many".into());
                println!("{:>8} {}", small, word);
            }
        }
    """,
    "app/src/checksum.rs": """
        use std::io::Read;
        fn main() {
            let mut data = Vec::new();
            std::io::stdin().read_to_end(&mut data).unwrap();
            println!("{:016x}", textstats::fnv1a(&data));
        }
    """,
}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, toolchain):
    root = tmp_path_factory.mktemp("workspace")
    for name, text in WORKSPACE.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text).lstrip())
    return root


def test_cargo_workspace_builds_and_runs(workspace, toolchain, tmp_path):
    res = mewe_cli("cargo", "--variants", "2", "--seed", "4", "build", "--manifest-path", workspace / "Cargo.toml",
                   "-p", "app", "--bin", "wordfreq", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    module = workspace / "target" / "mewe" / "wordfreq.wasm"
    plain = workspace / "target" / toolchain.target / "release" / "wordfreq.wasm"  # rustc's own link
    manifest = json.loads(module.with_name("wordfreq.manifest.json").read_text())
    assert manifest["totals"]["dispatched"] >= 0.9 * manifest["totals"]["functions"]
    names = {f["name"] for f in manifest["functions"] if f["status"] == "dispatched"}
    assert any(n.startswith("_ZN8wordfreq4main") for n in names)  # textstats is inlined into it by LTO
    text = b"to be or not to be\nthat is the question\n" * 40 + b"be " * 300
    for args in ([], ["5"]):
        expected = run(plain, args, text, tmp_path)
        assert expected[0] == 0 and b"many be" in expected[1]
        for seed in (1, 2):
            assert run(module, args, text, tmp_path, policy=f"seeded:{seed}") == expected
    # the bitcode deleted while cargo thinks the crate fresh: mewe has cargo make it again
    bitcode = module.with_name("wordfreq.bc")
    bitcode.unlink()
    res = mewe_cli("cargo", "--variants", "2", "--seed", "4", "-o", tmp_path / "again.wasm", "build", "--manifest-path",
                   workspace / "Cargo.toml", "-p", "app", "--bin", "wordfreq", cwd=tmp_path)
    assert res.returncode == 0 and bitcode.exists(), res.stderr
    assert run(tmp_path / "again.wasm", [], text, tmp_path, policy="seeded:1") == run(plain, [], text, tmp_path)


def test_cargo_errors_are_one_line(workspace, tmp_path):
    manifest = workspace / "Cargo.toml"
    cases = [
        (["build", "--manifest-path", manifest, "--bin", "nope"], "no binary target 'nope'"),
        (["build", "--manifest-path", manifest, "-p", "nope"], "no package 'nope'"),
        (["build", "--manifest-path", manifest, "--target", "x86_64-unknown-linux-gnu"], "mewe cargo build targets"),
        (["build", "--manifest-path", manifest, "--lib"], "--lib is not supported"),
        (["-o", tmp_path / "one.wasm", "build", "--manifest-path", manifest, "-p", "app"],
         "cargo selected 2 binaries (wordfreq, checksum)"),
    ]
    for args, message in cases:
        res = mewe_cli("cargo", *args, cwd=tmp_path)
        assert res.returncode == 1 and message in res.stderr and res.stderr.count("\n") == 1, (args, res.stderr)
    assert not (tmp_path / "one.wasm").exists()
    broken = workspace.parent / "broken"
    shutil.copytree(workspace, broken, ignore=shutil.ignore_patterns("target"))
    (broken / "app" / "src" / "checksum.rs").write_text("fn main() { let x: u8 = \"no\"; }\n")
    res = mewe_cli("cargo", "build", "--manifest-path", broken / "Cargo.toml", "--bin", "checksum", cwd=tmp_path)
    assert res.returncode == 1 and "mewe: error: cargo build of checksum failed: error" in res.stderr
    assert "mismatched types" in res.stderr  # rustc's diagnostics are shown above the error line


# --- the QR endpoints ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def qr(tmp_path_factory, toolchain):
    """services/qr built multivariant (traced) with the Python API; rustc's plain build beside it."""
    project = tmp_path_factory.mktemp("qr") / "qr"
    shutil.copytree(ROOT / "services" / "qr", project, ignore=shutil.ignore_patterns("target", "Cargo.lock"))
    results = mewe.cargo_build(["--manifest-path", str(project / "Cargo.toml")],
                               multivariant=mewe.MultivariantOptions(variants=2, seed=7, trace=True))
    built = {r.output.stem: r for r in results}
    assert set(built) == {"qr_str", "qr_image"}
    plain = {name: project / "target" / toolchain.target / "release" / f"{name}.wasm" for name in built}
    return built, plain


def test_qr_endpoints_are_diversified(qr):
    built, _ = qr
    for name, result in built.items():
        assert dispatched_share(result) >= 0.9, name
        # At least one variant each; how many more the cost bound (--max-cost) decides, by the
        # estimates the manifest records.
        assert result.manifest.totals()["bodies"] > 2.2 * result.manifest.totals()["dispatched"], name
        assert all(len(f.costs) == f.variants for f in result.manifest.dispatched), name


def test_qr_output_matches_the_plain_build(qr, tmp_path):
    built, plain = qr
    for name, result in built.items():
        for data in QR_INPUTS:
            for level in QR_LEVELS:
                expected = run(plain[name], level, data, tmp_path)
                assert expected[0] == 0
                for policy in (None, "pinned:0", "pinned:1", "pinned:2"):  # random, then every variant alone
                    assert run(result.output, level, data, tmp_path, policy=policy) == expected, (name, data, level)
        assert run(built["qr_image"].output, [], b"x", tmp_path)[1].startswith(b"<?xml")
        for bad_args, bad_data in (([], b""), (["Z"], b"x"), (["H"], b"9" * 4000)):  # refused the same way
            status, _ = run(result.output, bad_args, bad_data, tmp_path)
            assert status == 2 and run(plain[name], bad_args, bad_data, tmp_path)[0] == 2


def test_qr_calls_take_distinct_paths(qr, tmp_path):
    built, _ = qr
    for name, result in built.items():
        digests = set()
        for _ in range(100):
            trace: list[tuple[str, int]] = []
            assert run(result.output, [], QR_INPUTS[1], tmp_path, trace=trace)[0] == 0
            assert len(trace) > 1000
            digests.add(hashlib.sha256(repr(trace).encode()).hexdigest())
        assert len(digests) == 100, name
