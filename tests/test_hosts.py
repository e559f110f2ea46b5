"""Hosts mewe did not write run what mewe builds, byte for byte: every example and the QR
endpoints (Rust), plain and multivariant under several policies, as a core module under
wasmtime (`mewe run`) and Node's built-in WASI (V8), and as a WASI 0.2 component under wasmtime
and jco (`jco run`, the Bytecode Alliance's component host on Node, from npm into the cache);
the libsodium endpoints under Node's WASI and, as wasi:http components, under `jco serve`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import EXAMPLES, ROOT, load_benchmark, mewe
from test_component import FILES_C
from mewe import MultivariantOptions, cargo_build, componentize

pytestmark = pytest.mark.slow  # jco from npm (once, ~20 s), 12 builds and 2 cargo builds, Node runs

RUNS = {  # example -> (stdin, args, exit status)
    "base64": (b"multivariant execution at the edge", [], 0),
    "hash": (b"abc" * 1000, [], 0),
    "interp": (b"let x = 3*(4+5)\nprint x - 2\nprint fib(18)\nprint 1/0\n", [], 1),
    "sort": (b"42\n-7\n19\n3\n3\n1000\n", ["-n"], 0),
}
BUILDS = {"plain": [], "random": ["--variants", "2"], "pinned:2": ["--variants", "2", "--policy", "pinned:2"],
          "seeded:7": ["--variants", "2", "--policy", "seeded:7"]}
EVERY_POLICY = ("interp", "sort")  # the others: plain and random only, to keep the test short
NODE_WASI = """
const { WASI } = require('node:wasi');
const fs = require('node:fs');
(async () => {
  const [path, ...args] = process.argv.slice(1);
  const wasi = new WASI({ version: 'preview1', args: [path, ...args], env: {}, returnOnExit: true });
  const imports = { ...wasi.getImportObject(), mewe: { trace() {} } };  // a traced build's batches, dropped
  const instance = await WebAssembly.instantiate(await WebAssembly.compile(fs.readFileSync(path)), imports);
  process.exitCode = wasi.start(instance);
})();
"""


def _need(tool: str) -> str:
    found = shutil.which(tool)
    if found is None:
        pytest.fail(f"needs {tool} (Node.js and npm: apt install nodejs npm)")
    return found


@pytest.fixture(scope="module")
def jco() -> str:
    _need("node"), _need("npm")
    return load_benchmark("edge").jco_binary()


def _node(module: Path, stdin: bytes, args: list[str]) -> tuple[int, bytes]:
    proc = subprocess.run([_need("node"), "--no-warnings", "-e", NODE_WASI, str(module), *args], input=stdin,
                          capture_output=True, timeout=120)
    return proc.returncode, proc.stdout


def _same_everywhere(jco: str, module: Path, stdin: bytes, args: list[str], status: int, where: str) -> None:
    component = module.with_suffix(".component.wasm")
    component.write_bytes(componentize(module.read_bytes(), module.name))
    reference = mewe("run", module, *args, stdin=stdin)
    assert reference.returncode == status and reference.stdout, (where, reference.stderr)
    assert _node(module, stdin, args) == (status, reference.stdout), f"{where}: Node's WASI differs"
    ours = mewe("run", component, *args, stdin=stdin)
    assert (ours.returncode, ours.stdout) == (status, reference.stdout), f"{where}: component under wasmtime"
    theirs = subprocess.run([jco, "run", str(component), *args], input=stdin, capture_output=True, timeout=120)
    assert (theirs.returncode, theirs.stdout) == (status, reference.stdout), f"{where}: component under jco"


def test_every_host_gives_the_same_bytes(jco, tmp_path):
    for name, (stdin, args, status) in RUNS.items():
        for build, flags in BUILDS.items():
            if name not in EVERY_POLICY and build not in ("plain", "random"):
                continue
            module = tmp_path / f"{name}-{build.replace(':', '-')}.wasm"
            res = mewe("build", EXAMPLES / f"{name}.c", *flags, "-o", module)
            assert res.returncode == 0, res.stderr
            _same_everywhere(jco, module, stdin, args, status, f"{name}, {build}")


def test_the_qr_endpoints_on_every_host(jco, tmp_path):
    project = tmp_path / "qr"
    shutil.copytree(ROOT / "services" / "qr", project, ignore=shutil.ignore_patterns("target", "Cargo.lock"))
    request = b"https://example.org/multivariant-execution-at-the-edge"
    for kind, options in (("plain", MultivariantOptions()), ("multivariant", MultivariantOptions(variants=2, seed=3))):
        out = tmp_path / kind
        out.mkdir()
        for result in cargo_build(["--manifest-path", str(project / "Cargo.toml")], None, multivariant=options):
            module = out / result.output.name
            shutil.copy(result.output, module)
            _same_everywhere(jco, module, request, ["H"], 0, f"{module.stem}, {kind}")


def test_http_components_under_jco_serve(jco, tmp_path):
    """`--emit http` served by a host mewe did not write: the body is stdin, `?arg=` the
    arguments, stdout the 200 answer; a nonzero exit is a 500 with stderr; a trap is the
    host's 5xx, and the host goes on serving."""
    source = tmp_path / "status.c"
    source.write_text('#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n'
                      'int main(int argc, char **argv) { char line[64];'
                      ' if (argc > 1 && !strcmp(argv[1], "trap")) abort();'
                      ' if (argc > 1) { fprintf(stderr, "no such mode: %s\\n", argv[1]); return 3; }'
                      ' while (fgets(line, sizeof line, stdin)) fputs(line, stdout); return 0; }\n')
    files = tmp_path / "files.c"
    files.write_text(FILES_C)
    for name, path in (("sort", EXAMPLES / "sort.c"), ("status", source), ("files", files)):
        component = tmp_path / f"{name}.wasm"
        res = mewe("build", path, "--variants", 2, "--emit", "http", "-o", component)
        assert res.returncode == 0, res.stderr
        server = load_benchmark("edge").JcoServer(component, jco)
        post = lambda path, body=b"": server.call(path, body)[::2]  # noqa: E731 - status and body
        try:
            if name == "files":  # file and directory calls fail as under a host without preopens
                module = tmp_path / "files-module.wasm"
                assert mewe("build", path, "-o", module).returncode == 0
                assert post("/") == (200, mewe("run", module, stdin=b"").stdout)
                continue
            if name == "sort":
                body = b"42\n-7\n19\n3\n1000\n"
                assert post("/?arg=-n", body) == (200, b"-7\n3\n19\n42\n1000\n")
                assert post("/", body) == (200, b"-7\n1000\n19\n3\n42\n")
                continue
            assert post("/", b"echo\nthis\n") == (200, b"echo\nthis\n")
            assert post("/?arg=odd+mode%21") == (500, b"no such mode: odd mode!\n")
            assert post("/?arg=trap")[0] >= 500
            assert post("/", b"still here\n") == (200, b"still here\n")
        finally:
            server.close()
        assert not server.running()


def test_traced_http_components_answer_concurrent_requests_with_distinct_traces(jco, tmp_path):
    """A traced multivariant service under jco serve, 12 requests from 4 clients at once: every
    answer right, every dispatch trace (x-mewe-trace) different (drawn on every call: sort has
    few functions, so the default every:1000 makes too few draws per request for 12 to be
    sure to differ). Under `pinned:1` the trace is fixed, and it is the hash mewe's own host
    computes for the same run."""
    from concurrent.futures import ThreadPoolExecutor

    from mewe import run
    from mewe.runtime.host import TraceDigest

    body = b"".join(b"%d\n" % ((i * 7919) % 1000 - 500) for i in range(200))
    expected = b"".join(b"%d\n" % n for n in sorted((i * 7919) % 1000 - 500 for i in range(200)))
    traces = {}
    for policy in ("random", "pinned:1"):
        module, component = tmp_path / f"{policy[:6]}.wasm", tmp_path / f"{policy[:6]}-http.wasm"
        for out, emit in ((module, "module"), (component, "http")):
            res = mewe("build", EXAMPLES / "sort.c", "--variants", 2, "--trace", "--policy", policy, "--emit", emit,
                       "--rerandomize", "call" if policy == "random" else "every:1000", "-o", out)
            assert res.returncode == 0, res.stderr
        server = load_benchmark("edge").JcoServer(component, jco)
        try:
            with ThreadPoolExecutor(4) as pool:
                answers = list(pool.map(lambda _: server.call("/?arg=-n", body), range(12)))
        finally:
            server.close()
        assert not server.running()  # jco and the node process it started are gone
        assert all((status, data) == (200, expected) for status, _, data, _ in answers)
        traces[policy] = [headers["x-mewe-trace"] for _, _, _, headers in answers]
        ours = TraceDigest()
        (tmp_path / "body").write_bytes(body)
        assert run(module, ["-n"], stdin=tmp_path / "body", stdout=os.devnull, trace=ours) == 0
        assert {headers["x-mewe-trace-length"] for _, _, _, headers in answers} == {str(ours.length)}
        traces[policy + " (mewe)"] = ours.hexdigest()
    assert len(set(traces["random"])) == 12
    assert set(traces["pinned:1"]) == {traces["pinned:1 (mewe)"]}


LIBSODIUM_ENDPOINTS = ("encrypt", "decrypt", "random", "invert", "bin2base64")


def test_the_libsodium_endpoints_on_every_host(jco, libsodium, libsodium_plain, tmp_path):
    """The five C endpoints, linked against libsodium built plain and built multivariant and
    traced: the same bytes under wasmtime and Node's WASI (plain; multivariant under random,
    and the deterministic endpoints also under pinned:1 and seeded:7), and as traced wasi:http
    components under jco serve the same answers, with a different dispatch trace on every
    request."""
    builds = {"plain": (libsodium_plain, ["-mewe-variants=0"])}
    for policy in ("random", "pinned:1", "seeded:7"):
        builds[policy] = (libsodium, ["-mewe-trace=1", f"-mewe-policy={policy}"])
    sealed = mewe("run", _link(builds, "encrypt", "random", "module", tmp_path), stdin=b"edge").stdout
    bodies = {"encrypt": b"multivariant edge", "decrypt": sealed, "random": b"16", "invert": b"02" + b"00" * 31,
              "bin2base64": b"hi!"}
    for name in LIBSODIUM_ENDPOINTS:
        for build in builds if name in ("invert", "bin2base64") else ("plain", "random"):
            module = _link(builds, name, build, "module", tmp_path)
            reference = mewe("run", module, stdin=bodies[name])
            assert reference.returncode == 0 and reference.stdout, (name, build, reference.stderr)
            status, out = _node(module, bodies[name], [])
            assert status == 0, (name, build)
            if name == "encrypt":  # a fresh nonce each run: what Node sealed must open
                assert mewe("run", _link(builds, "decrypt", build, "module", tmp_path), stdin=out).stdout == bodies[name]
            elif name == "random":
                assert len(out) == len(reference.stdout) == 33 and out != reference.stdout
            else:
                assert out == reference.stdout, f"{name}, {build}: Node's WASI differs"
        server = load_benchmark("edge").JcoServer(_link(builds, name, "random", "http", tmp_path), jco)
        try:
            answers = [server.call("/", bodies[name]) for _ in range(5)]
        finally:
            server.close()
        assert not server.running()
        assert all(status == 200 for status, _, _, _ in answers), (name, answers[0][2][:200])
        if name in ("decrypt", "invert", "bin2base64"):
            assert {data for _, _, data, _ in answers} == {reference.stdout}, name
        assert len({headers["x-mewe-trace"] for _, _, _, headers in answers}) == 5, name


def _link(builds: dict[str, tuple[Path, list[str]]], name: str, build: str, emit: str, tmp_path: Path) -> Path:
    """services/NAME.c linked by mewe-cc against the libsodium tree and with the flags of `build`."""
    tree, flags = builds[build]
    lib = tree / "src" / "libsodium"
    out = tmp_path / f"{name}-{build.replace(':', '-')}-{emit}.wasm"
    if not out.exists():
        subprocess.run([str(Path(sys.executable).parent / "mewe-cc"), "-O2", *flags, f"-mewe-emit={emit}",
                        f"-I{lib / 'include'}", str(ROOT / "services" / f"{name}.c"), f"-L{lib / '.libs'}", "-lsodium",
                        "-o", str(out)], check=True, capture_output=True)
    return out
