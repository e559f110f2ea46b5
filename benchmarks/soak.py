"""A bounded soak of `mewe serve`: does memory stay flat under a long mixed load?

Builds two multivariant services from the examples (sort, interp), serves them with
`mewe serve --nodes N` on loopback, and has several client threads send a mix of good and bad
requests for --minutes: sorts (200), interpreter scripts (200), scripts that fail (500), an
unknown service (404), a body over the limit (413) and a wrong method (405). Each answer's
status is checked against the request's kind. The resident memory (VmRSS) of the supervisor
and of every node is read from /proc after a warm-up and at the end, and the nodes' every
--sample seconds in between.

    python benchmarks/soak.py [--minutes 10] [--nodes 2] [--clients 4] [--json out.json]
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BIN = Path(sys.executable).parent
MAX_BODY = 1 << 20


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return sorted(out)


def requests(rng: random.Random) -> tuple[str, str, bytes, int]:
    """(method, path, body, expected status) of one request, drawn at random."""
    kind = rng.randrange(10)
    if kind < 4:
        body = b"".join(b"%d\n" % rng.randrange(10**6) for _ in range(rng.randrange(1, 400)))
        return "POST", "/sort?arg=-n", body, 200
    if kind < 6:
        return "POST", "/interp", b"print %d*(%d+1)\n" % (rng.randrange(1000), rng.randrange(1000)), 200
    if kind == 6:
        return "POST", "/interp", b"print )(\n", 500
    if kind == 7:
        return "GET", "/no-such-service", b"", 404
    if kind == 8:
        return "POST", "/sort", b"x" * (MAX_BODY + 1), 413
    return "PUT", "/sort", b"", 405


def client(port: int, seed: int, deadline: float, tally: Counter, wrong: list, lock: threading.Lock) -> None:
    rng = random.Random(seed)
    while time.monotonic() < deadline:
        method, path, body, expected = requests(rng)
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request(method, path, body=body)
            status = conn.getresponse().status
            conn.close()
        except OSError as exc:
            status = f"error: {type(exc).__name__}"
        with lock:
            tally[status] += 1
            if status != expected:
                wrong.append((method, path, expected, status))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--sample", type=float, default=30, help="seconds between memory samples (default 30)")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mewe-soak-") as tmp_name:
        tmp = Path(tmp_name)
        modules = []
        for name in ("sort", "interp"):
            out = tmp / f"{name}.wasm"
            subprocess.run([str(BIN / "mewe"), "build", str(ROOT / "examples" / f"{name}.c"), "--variants", "4",
                            "-o", str(out)], check=True)
            modules.append(str(out))
        server = subprocess.Popen([str(BIN / "mewe"), "serve", *modules, "--port", "0", "--nodes", str(args.nodes),
                                   "--max-body", str(MAX_BODY)], stderr=subprocess.PIPE, text=True)
        try:
            first = server.stderr.readline()
            port = int(re.search(r"http://127\.0\.0\.1:(\d+)", first).group(1))
            threading.Thread(target=lambda: [None for _ in server.stderr], daemon=True).start()  # keep draining
            tally: Counter = Counter()
            wrong: list = []
            lock = threading.Lock()
            client(port, 0, time.monotonic() + 5, Counter(), [], lock)  # warm-up: every node compiled and busy once
            nodes = children(server.pid)
            start = {"supervisor": rss_kib(server.pid), **{f"node {k + 1}": rss_kib(p) for k, p in enumerate(nodes)}}
            began = time.monotonic()
            threads = [threading.Thread(target=client, args=(port, 1 + k, began + args.minutes * 60, tally, wrong, lock))
                       for k in range(args.clients)]
            for t in threads:
                t.start()
            series = []  # (minutes, RSS of each node in MiB), every --sample seconds: growth that levels off is not a leak
            while any(t.is_alive() for t in threads):
                series.append((round((time.monotonic() - began) / 60, 2), [round(rss_kib(p) / 1024, 1) for p in nodes]))
                for t in threads:
                    t.join(timeout=args.sample / len(threads))
            elapsed = time.monotonic() - began
            end_nodes = children(server.pid)
            end = {"supervisor": rss_kib(server.pid), **{f"node {k + 1}": rss_kib(p) for k, p in enumerate(end_nodes)}}
        finally:
            server.terminate()
            server.wait(timeout=30)
    report = {"minutes": elapsed / 60, "nodes": args.nodes, "clients": args.clients, "requests": sum(tally.values()),
              "by_status": {str(k): v for k, v in sorted(tally.items(), key=str)}, "wrong": len(wrong),
              "same_nodes": nodes == end_nodes, "rss_kib_start": start, "rss_kib_end": end, "rss_mib_series": series}
    print(f"{report['requests']} requests in {report['minutes']:.1f} min, {len(wrong)} with an unexpected status "
          f"({wrong[:3]}); by status {report['by_status']}; nodes replaced: {nodes != end_nodes}", file=sys.stderr)
    print("| process | RSS at start (MiB) | RSS at end (MiB) | change |")
    print("|---|---|---|---|")
    for key in start:
        a, b = start[key] / 1024, end.get(key, 0) / 1024
        print(f"| {key} | {a:.1f} | {b:.1f} | {b - a:+.1f} |")
    print("\nnode RSS (MiB) over time: " + "; ".join(f"{m:g} min {'/'.join(map(str, r))}" for m, r in series))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
