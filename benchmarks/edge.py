"""The reference evaluation on one machine, for its seven endpoints (services/).

Builds libsodium three times with its own configure + make through mewe-cc (plain, multivariant
with the default options, and the same with tracing; see libsodium.py) and links each C service
against each; builds the Rust QR service (services/qr, qrcode 0.12) with `mewe cargo build` the
same three ways; then measures:

- RQ1 static diversity: functions, dispatched functions, bodies, variants still distinct in
  the wasm and after Cranelift (`mewe.preservation`), sizes.
- RQ2/RQ3 path diversity (the traced builds): `mewe serve --nodes N`; the same request sent until every node
  answered CALLS times; unique trace hashes per node and overall, and the normalized entropy
  of the path distribution.
- Overhead: latency of the plain and the multivariant service (the default build, which is what
  a user deploys: tracing adds a call per dispatch), alternated in one run: in
  process (`mewe.run`, instantiation included, compilation excluded) and through the
  emulator (HTTP on loopback).
- RQ4 timing side channel: latencies under `pinned:K` (one fixed path per K), each K against
  K=0 with a two-sided Mann-Whitney U test.
- With `--jco`: latency of the plain and the multivariant build as wasi:http components
  (`--emit http`) under `jco serve`, an HTTP host mewe did not write, and unique traces of the
  traced build there (CALLS requests; the component's answers carry the trace hash).

    python benchmarks/edge.py --json edge.json        # ~10 min on 2 cores (libsodium builds cached)
    python benchmarks/edge.py --endpoints qr_str,qr_image   # the Rust endpoints only
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
BIN = Path(sys.executable).parent
SERVICES = ("encrypt", "decrypt", "random", "invert", "bin2base64")
RUST_SERVICES = ("qr_str", "qr_image")
KINDS = ("plain", "multivariant", "traced")  # traced: the default build with --trace, for RQ2/RQ3
QR_REQUEST = b"https://example.org/multivariant-execution-at-the-edge"
# The reference's per-endpoint figures: functions, dispatchers, variants, median latency of the
# original and the multivariant service (µs, on its own edge host) and their ratio.
REFERENCE = {
    "encrypt": {"functions": 23, "dispatchers": 5, "variants": 56, "plain_median_us": 7,
                "multivariant_median_us": 217, "slowdown": 31.0},
    "decrypt": {"functions": 20, "dispatchers": 5, "variants": 49, "plain_median_us": 13,
                "multivariant_median_us": 225, "slowdown": 17.0},
    "random": {"functions": 8, "dispatchers": 2, "variants": 238, "plain_median_us": 16,
               "multivariant_median_us": 232, "slowdown": 14.5},
    "invert": {"functions": 8, "dispatchers": 2, "variants": 125, "plain_median_us": 119,
               "multivariant_median_us": 341, "slowdown": 2.9},
    "bin2base64": {"functions": 3, "dispatchers": 2, "variants": 47, "plain_median_us": 10,
                   "multivariant_median_us": 215, "slowdown": 21.5},
    "qr_str": {"functions": 982, "dispatchers": 17, "variants": 2092, "plain_median_us": 3117,
               "multivariant_median_us": 492606, "slowdown": 158.0},
    "qr_image": {"functions": 858, "dispatchers": 15, "variants": 2063, "plain_median_us": 3091,
                 "multivariant_median_us": 512669, "slowdown": 166.0},
}


def _bench(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"bench_{name}", HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_libsodium(work: Path, variants: int, jobs: int, reuse: bool) -> dict[str, Path]:
    lib = _bench("libsodium")
    source = lib.fetch()
    trees = {}
    for kind, settings in (("plain", {"MEWE_VARIANTS": "0"}), ("multivariant", {"MEWE_VARIANTS": str(variants)}),
                           ("traced", {"MEWE_VARIANTS": str(variants), "MEWE_TRACE": "1"})):
        dest = work / f"libsodium-{kind}"
        stamp = dest / "mewe-settings.json"  # --reuse only a tree built with these settings
        built = (dest / "src" / "libsodium" / ".libs" / "libsodium.a").is_file() and stamp.is_file()
        if not (reuse and built and json.loads(stamp.read_text()) == settings):
            start = time.perf_counter()
            lib.build(source, dest, settings, jobs)
            stamp.write_text(json.dumps(settings))
            print(f"libsodium {kind}: built in {time.perf_counter() - start:.0f} s", flush=True)
        trees[kind] = dest / "src" / "libsodium"
    return trees


def build_services(trees: dict[str, Path], out: Path, variants: int, names: tuple[str, ...]) -> dict[str, dict[str, Path]]:
    built: dict[str, dict[str, Path]] = {kind: {} for kind in KINDS}
    for kind, lib in trees.items():
        for name in (n for n in SERVICES if n in names):
            target = out / kind / f"{name}.wasm"
            target.parent.mkdir(parents=True, exist_ok=True)
            flags = {"plain": ["-mewe-variants=0"], "multivariant": [f"-mewe-variants={variants}", "-mewe-manifest"],
                     "traced": [f"-mewe-variants={variants}", "-mewe-trace=1"]}[kind]
            subprocess.run([str(BIN / "mewe-cc"), "-O2", *flags, f"-I{lib / 'include'}",
                            str(ROOT / "services" / f"{name}.c"), f"-L{lib / '.libs'}", "-lsodium", "-o", str(target)],
                           check=True)
            built[kind][name] = target
    return built


def build_rust_services(out: Path, variants: int, names: tuple[str, ...]) -> dict[str, dict[str, Path]]:
    """The QR endpoints, each built plain, multivariant and traced by `mewe.cargo_build`."""
    import shutil

    from mewe import MultivariantOptions, cargo_build

    project = out / "qr"
    shutil.copytree(ROOT / "services" / "qr", project, ignore=shutil.ignore_patterns("target", "Cargo.lock"))
    built: dict[str, dict[str, Path]] = {kind: {} for kind in KINDS}
    for kind, mv in (("plain", MultivariantOptions()), ("multivariant", MultivariantOptions(variants=variants)),
                     ("traced", MultivariantOptions(variants=variants, trace=True))):
        for name in (n for n in RUST_SERVICES if n in names):
            target = out / kind / f"{name}.wasm"
            target.parent.mkdir(parents=True, exist_ok=True)
            start = time.perf_counter()
            cargo_build(["--manifest-path", str(project / "Cargo.toml"), "--bin", name], target, multivariant=mv)
            print(f"{name} {kind}: built in {time.perf_counter() - start:.0f} s", flush=True)
            built[kind][name] = target
    return built


def requests(plain: dict[str, Path], tmp: Path) -> dict[str, bytes]:
    """One fixed request per endpoint (decrypt's is a message sealed by the plain encrypt)."""
    from mewe import run

    if "encrypt" not in plain:
        return {"qr_str": QR_REQUEST, "qr_image": QR_REQUEST}
    (tmp / "msg").write_bytes(b"multivariant execution at the edge")
    run(plain["encrypt"], [], stdin=tmp / "msg", stdout=tmp / "sealed")
    return {"encrypt": b"multivariant execution at the edge", "decrypt": (tmp / "sealed").read_bytes(),
            "random": b"32", "invert": ("5a" * 31 + "07").encode(), "bin2base64": b"multivariant execution at the edge",
            "qr_str": QR_REQUEST, "qr_image": QR_REQUEST}


def rq1(services: dict[str, dict[str, Path]]) -> dict[str, dict]:
    from mewe import preservation

    rows = {}
    for name in services["multivariant"]:
        module = services["multivariant"][name]
        manifest = json.loads(module.with_name(f"{name}.manifest.json").read_text())
        totals = manifest["totals"]
        rates = preservation(module).rates()
        rows[name] = {"functions": totals["functions"], "dispatchers": totals["dispatched"],
                      "variants": totals["bodies"] - totals["dispatched"], "bodies": totals["bodies"],
                      "preserved_wasm": rates["overall"]["wasm"], "preserved_native": rates["overall"]["native"],
                      "size_plain": services["plain"][name].stat().st_size, "size_multivariant": module.stat().st_size,
                      "seed": manifest["seed"]}
    return rows


class Server:
    """`mewe serve` in a subprocess; HTTP calls to it."""

    def __init__(self, modules: list[Path], nodes: int):
        self.proc = subprocess.Popen([sys.executable, "-m", "mewe", "serve", *map(str, modules), "--port", "0",
                                      "--nodes", str(nodes)], stderr=subprocess.PIPE, text=True)
        line = self.proc.stderr.readline()
        match = re.search(r":(\d+) \(", line)
        if not match:
            self.proc.kill()
            raise RuntimeError(f"mewe serve did not start: {line}")
        self.port = int(match.group(1))

    def call(self, name: str, body: bytes) -> tuple[int, dict[str, str], float, bytes]:
        start = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        conn.request("POST", f"/{name}", body=body)
        resp = conn.getresponse()
        data = resp.read()
        elapsed = time.perf_counter() - start
        conn.close()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, elapsed, data

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


JCO = "@bytecodealliance/jco@1.35.0"


def jco_binary() -> str:
    """jco (the Bytecode Alliance's component host on Node), installed by npm into the cache."""
    import shutil

    from mewe.fsutil import cache_dir

    prefix = cache_dir("hosts", JCO.rsplit("@", 1)[1])
    binary = prefix / "node_modules" / ".bin" / "jco"
    if not binary.exists():
        npm = shutil.which("npm")
        if npm is None or shutil.which("node") is None:
            raise SystemExit("jco needs Node.js and npm (apt install nodejs npm)")
        subprocess.run([npm, "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(prefix), JCO],
                       check=True, timeout=600)
    return str(binary)


class JcoServer:
    """`jco serve` of one wasi:http component on a free loopback port, each request in a fresh
    worker (as an edge host isolates requests); HTTP calls to it."""

    def __init__(self, component: Path, jco: str | None = None):
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        # A session of its own: jco runs the server in a child node process, which must go too.
        self.proc = subprocess.Popen([jco or jco_binary(), "serve", str(component), "--host", "127.0.0.1",
                                      "--port", str(self.port), "--isolate-requests", "worker",
                                      "--isolate-worker-pool-size", "2"],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # it transpiles the component first
            line = self.proc.stdout.readline()
            if "listening" in line or not line:
                break
        if self.proc.poll() is not None:
            raise RuntimeError(f"jco serve did not start for {component.name}")

    def call(self, path: str, body: bytes = b"") -> tuple[int, float, bytes, dict[str, str]]:
        """Status, seconds, body and headers (names in lower case) of one POST."""
        start = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        conn.request("POST", path, body=body)
        resp = conn.getresponse()
        data = resp.read()
        elapsed = time.perf_counter() - start
        conn.close()
        return resp.status, elapsed, data, {k.lower(): v for k, v in resp.getheaders()}

    def close(self) -> None:
        """Stop jco and every process it started (SIGTERM to its process group, then SIGKILL)."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + 10
            while self.running() and time.monotonic() < deadline:
                time.sleep(0.05)
            if not self.running():
                break
        self.proc.wait(10)

    def running(self) -> bool:
        """Whether any process jco started is still there."""
        self.proc.poll()  # reap the parent, so that it does not count as running
        try:
            os.killpg(self.proc.pid, 0)
        except ProcessLookupError:
            return False
        return True


def under_jco(services: dict[str, dict[str, Path]], bodies: dict[str, bytes], runs: int, calls: int,
              tmp: Path) -> dict[str, dict]:
    """The endpoints as wasi:http components under jco serve (an HTTP host mewe did not write):
    latency of the plain and the default multivariant build, alternated, and path diversity of
    the traced build (the trace hash in each answer's x-mewe-trace header, `calls` requests)."""
    from mewe import componentize

    jco = jco_binary()
    rows = {}
    for name in services["multivariant"]:
        servers = {}
        try:
            for kind in ("plain", "multivariant", "traced"):
                component = tmp / f"{name}-{kind}.http.wasm"
                component.write_bytes(componentize(services[kind][name].read_bytes(), name, "http"))
                servers[kind] = JcoServer(component, jco)
                servers[kind].call("/", bodies[name])  # warm the worker pool
            times: dict[str, list[float]] = {"plain": [], "multivariant": []}
            for _ in range(runs):
                for kind in times:
                    status, elapsed, data, _ = servers[kind].call("/", bodies[name])
                    if status != 200:
                        raise RuntimeError(f"{name} ({kind}) under jco serve: HTTP {status}: {data[:200]!r}")
                    times[kind].append(elapsed)
            traces = []
            for _ in range(calls):
                status, _, data, headers = servers["traced"].call("/", bodies[name])
                if status != 200 or "x-mewe-trace" not in headers:
                    raise RuntimeError(f"{name} (traced) under jco serve: HTTP {status}, no trace: {data[:200]!r}")
                traces.append(headers["x-mewe-trace"])
            row = {f"{kind}_median_us": statistics.median(v) * 1e6 for kind, v in times.items()}
            row["ratio_median"] = row["multivariant_median_us"] / row["plain_median_us"]
            row["samples_us"] = _samples(times)
            row["unique"] = len(set(traces)) / len(traces)
            row["entropy"] = entropy_ratio(Counter(traces), len(traces))
            rows[name] = row
        finally:
            for server in servers.values():
                server.close()
    return rows


def entropy_ratio(counts: Counter, total: int) -> float:
    """Shannon entropy of the observed paths over its maximum for `total` calls (all distinct)."""
    if total <= 1:
        return 0.0
    h = -sum(c / total * math.log2(c / total) for c in counts.values())
    return h / math.log2(total)


def rq2_rq3(services: dict[str, Path], bodies: dict[str, bytes], nodes: int, calls: int) -> dict[str, dict]:
    server = Server(list(services.values()), nodes)
    rows = {}
    try:
        for name in services:
            per_node: dict[str, list[str]] = {str(k): [] for k in range(nodes)}
            sent = 0
            while any(len(v) < calls for v in per_node.values()) and sent < calls * nodes * 4:
                status, headers, _, data = server.call(name, bodies[name])
                sent += 1
                if status != 200:
                    raise RuntimeError(f"{name}: HTTP {status}: {data[:200]!r}")
                traces = per_node[headers["x-mewe-node"]]
                if len(traces) < calls:
                    traces.append(headers["x-mewe-trace"])
            all_traces = [t for v in per_node.values() for t in v]
            rows[name] = {
                "calls_per_node": {k: len(v) for k, v in per_node.items()},
                "unique_per_node": {k: len(set(v)) / max(1, len(v)) for k, v in per_node.items()},
                "unique_overall": len(set(all_traces)) / max(1, len(all_traces)),
                "entropy": entropy_ratio(Counter(all_traces), len(all_traces)),
            }
    finally:
        server.close()
    return rows


def _samples(times: dict) -> dict[str, list[float]]:
    """Latency samples in µs (0.1 µs is finer than the clock's noise), keyed as JSON keys are."""
    return {str(k): [round(v * 1e6, 1) for v in values] for k, values in times.items()}


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _in_process(module: Path, stdin: Path, policy: str | None = None) -> float:
    from mewe import run

    start = time.perf_counter()
    status = run(module, [], stdin=stdin, stdout=os.devnull, policy=policy)
    elapsed = time.perf_counter() - start
    if status != 0:
        raise RuntimeError(f"{module.name} exited with {status}")
    return elapsed


def overhead(services: dict[str, dict[str, Path]], bodies: dict[str, bytes], runs: int, tmp: Path) -> dict[str, dict]:
    rows = {}
    plain_server = Server(list(services["plain"].values()), 1)
    mv_server = Server(list(services["multivariant"].values()), 1)
    try:
        for name in services["multivariant"]:
            stdin = tmp / f"{name}.in"
            stdin.write_bytes(bodies[name])
            times: dict[str, list[float]] = {"plain": [], "multivariant": [], "plain_http": [], "multivariant_http": []}
            for kind in ("plain", "multivariant"):  # compile outside the timings
                _in_process(services[kind][name], stdin)
            for _ in range(runs):  # alternated, so drift on a shared machine hits both
                for kind, server in (("plain", plain_server), ("multivariant", mv_server)):
                    times[kind].append(_in_process(services[kind][name], stdin))
                    status, _, elapsed, _ = server.call(name, bodies[name])
                    assert status == 200
                    times[f"{kind}_http"].append(elapsed)
            row = {}
            for key, values in times.items():
                row[f"{key}_median_us"] = statistics.median(values) * 1e6
                row[f"{key}_p95_us"] = _percentile(values, 0.95) * 1e6
            row["ratio_median"] = row["multivariant_median_us"] / row["plain_median_us"]
            row["ratio_p95"] = row["multivariant_p95_us"] / row["plain_p95_us"]
            row["ratio_http_median"] = row["multivariant_http_median_us"] / row["plain_http_median_us"]
            row["ratio_http_p95"] = row["multivariant_http_p95_us"] / row["plain_http_p95_us"]
            row["samples_us"] = _samples(times)  # for the report's distributions
            rows[name] = row
    finally:
        plain_server.close()
        mv_server.close()
    return rows


def mann_whitney(a: list[float], b: list[float]) -> float:
    """Two-sided p-value of the Mann-Whitney U test (normal approximation, tie-corrected)."""
    pooled = sorted([(v, 0) for v in a] + [(v, 1) for v in b])
    ranks = [0.0] * len(pooled)
    ties = 0.0
    i = 0
    while i < len(pooled):
        j = i
        while j + 1 < len(pooled) and pooled[j + 1][0] == pooled[i][0]:
            j += 1
        for k in range(i, j + 1):
            ranks[k] = (i + j) / 2 + 1
        t = j - i + 1
        ties += t ** 3 - t
        i = j + 1
    n1, n2 = len(a), len(b)
    r1 = sum(r for r, (_, group) in zip(ranks, pooled) if group == 0)
    u = r1 - n1 * (n1 + 1) / 2
    n = n1 + n2
    sigma = math.sqrt(n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1))))
    if sigma == 0:
        return 1.0
    z = (abs(u - n1 * n2 / 2) - 0.5) / sigma
    return math.erfc(max(z, 0) / math.sqrt(2))


def rq4(services: dict[str, Path], bodies: dict[str, bytes], runs: int, widest: int, tmp: Path) -> dict[str, dict]:
    rows = {}
    for name in services:
        stdin = tmp / f"{name}.in"
        stdin.write_bytes(bodies[name])
        _in_process(services[name], stdin)
        samples: dict[int, list[float]] = {k: [] for k in range(widest)}
        for _ in range(runs):
            for k in range(widest):
                samples[k].append(_in_process(services[name], stdin, f"pinned:{k}"))
        pvalues = {k: mann_whitney(samples[0], samples[k]) for k in range(1, widest)}
        alpha = 0.05 / max(1, len(pvalues))  # Bonferroni over the comparisons
        rows[name] = {"median_us": {k: statistics.median(v) * 1e6 for k, v in samples.items()},
                      "p_values": pvalues, "distinguishable": sorted(k for k, p in pvalues.items() if p < alpha),
                      "samples_us": _samples(samples)}
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", type=int, default=4)
    parser.add_argument("--nodes", type=int, default=4, help="edge nodes for RQ2/RQ3 (default 4)")
    parser.add_argument("--calls", type=int, default=100, help="calls per node per endpoint (default 100)")
    parser.add_argument("--runs", type=int, default=100, help="latency samples per build per endpoint")
    parser.add_argument("--rq4-runs", type=int, default=40, help="latency samples per pinned path")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--work", type=Path, default=None, help="build directory (default: in the cache)")
    parser.add_argument("--reuse", action="store_true", help="reuse libsodium builds already in --work")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--jco", action="store_true",
                        help="also measure latency and unique traces under jco serve (the builds as wasi:http "
                             "components)")
    parser.add_argument("--endpoints", default=",".join(SERVICES + RUST_SERVICES),
                        help="comma-separated endpoints to evaluate (default: all seven)")
    args = parser.parse_args(argv)
    names = tuple(n for n in args.endpoints.split(",") if n)
    unknown = set(names) - set(SERVICES + RUST_SERVICES)
    if unknown:
        parser.error(f"unknown endpoint {sorted(unknown)[0]}")

    from mewe.fsutil import cache_dir

    work = args.work or cache_dir("edge")
    started = time.perf_counter()
    trees = build_libsodium(work, args.variants, args.jobs, args.reuse) if set(names) & set(SERVICES) else {}
    with tempfile.TemporaryDirectory(prefix="mewe-edge-") as scratch:
        tmp = Path(scratch)
        services = build_services(trees, tmp / "services", args.variants, names)
        for kind, built in build_rust_services(tmp / "services", args.variants, names).items():
            services[kind].update(built)
        bodies = requests(services["plain"], tmp)
        import platform

        from mewe import __version__

        out = {"settings": {k: v for k, v in vars(args).items() if k not in ("work", "json")}, "reference": REFERENCE,
               "mewe": __version__, "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
               "date": time.strftime("%Y-%m-%d")}
        out["rq1"] = rq1(services)
        print("RQ1", json.dumps(out["rq1"]), flush=True)
        out["rq2_rq3"] = rq2_rq3(services["traced"], bodies, args.nodes, args.calls)
        print("RQ2/3", json.dumps(out["rq2_rq3"]), flush=True)
        out["overhead"] = overhead(services, bodies, args.runs, tmp)
        print("overhead", json.dumps(out["overhead"]), flush=True)
        out["rq4"] = rq4(services["multivariant"], bodies, args.rq4_runs, args.variants + 1, tmp)
        print("RQ4", json.dumps(out["rq4"]), flush=True)
        if args.jco:
            out["jco"] = under_jco(services, bodies, args.runs, args.calls, tmp)
            print("jco", json.dumps({n: {k: r[k] for k in ("ratio_median", "unique", "entropy")}
                                     for n, r in out["jco"].items()}), flush=True)
    out["seconds"] = time.perf_counter() - started
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
