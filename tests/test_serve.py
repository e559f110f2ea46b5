"""`mewe serve` over real loopback HTTP: concurrent clients, several nodes, fresh instances,
limits and clear errors."""

from __future__ import annotations

import http.client
import os
import re
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import EXAMPLES, child_pids, mewe

pytestmark = pytest.mark.slow  # `pytest -m 'not slow'` leaves these out

ECHO_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
static char buf[1 << 16];
static void *volatile last; /* kept, so the allocations cannot be optimized away */
static void reverse(char *s, size_t n) { for (size_t i = 0; i < n / 2; i++) { char t = s[i]; s[i] = s[n - 1 - i]; s[n - 1 - i] = t; } }
int main(int argc, char **argv) {
    size_t n = fread(buf, 1, sizeof buf - 1, stdin);
    buf[n] = 0;
    if (strcmp(buf, "trap") == 0) __builtin_trap();
    if (strcmp(buf, "loop") == 0) { volatile unsigned spin = 1; while (spin) spin++; }
    if (strcmp(buf, "exit3") == 0) { fputs("failing on purpose\n", stderr); return 3; }
    if (strcmp(buf, "hog") == 0) { size_t total = 0; while ((last = malloc(1 << 20))) total++; printf("oom after %zu MiB\n", total); return 0; }
    reverse(buf, n);
    printf("%s", buf);
    for (int i = 1; i < argc; i++) printf(" %s", argv[i]);
    return 0;
}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve")
    (tmp / "echo.c").write_text(ECHO_C)
    for source, name in ((tmp / "echo.c", "echo"), (EXAMPLES / "hash.c", "hash")):
        res = mewe("build", source, "--variants", "3", "--trace", "-o", tmp / f"{name}.wasm")
        assert res.returncode == 0, res.stderr
    proc = subprocess.Popen([sys.executable, "-m", "mewe", "serve", tmp / "echo.wasm", tmp / "hash.wasm", "--port", "0",
                             "--nodes", "2", "--timeout-ms", "1500", "--memory-mb", "32", "--max-body", "4096",
                             "--log", tmp / "requests.log"],
                            stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()
    match = re.search(r"http://127\.0\.0\.1:(\d+) \(2 nodes; /echo, /hash; / lists them\)", line)
    assert match, line
    yield int(match.group(1))
    proc.terminate()
    proc.wait(10)


def request(port: int, path: str, body: bytes = b"", method: str = "POST") -> tuple[int, bytes, dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request(method, path, body=body)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, data, {k.lower(): v for k, v in resp.getheaders()}


def test_concurrent_clients_get_their_own_answers_from_every_node(server):
    def one(i: int):
        body = f"request-{i:04d}".encode()
        return i, request(server, f"/echo?arg=n{i}", body)

    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(one, range(120)))
    nodes, traces = set(), set()
    for i, (status, data, headers) in results:
        assert status == 200, data
        assert data == f"request-{i:04d}".encode()[::-1] + f" n{i}".encode()  # never another request's
        nodes.add(headers["x-mewe-node"])
        traces.add(headers["x-mewe-trace"])
        assert int(headers["x-mewe-trace-length"]) >= 1
    assert nodes == {"0", "1"}  # the kernel spreads 120 connections over both nodes
    assert len(traces) > 1  # fresh instances: fresh random paths


def test_several_services_are_mounted_by_name(server):
    status, data, _ = request(server, "/hash?arg=abc", method="GET")
    assert status == 200 and data.startswith(b"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    assert request(server, "/")[0] == 404  # two services: no default route to POST to
    status, index, _ = request(server, "/", method="GET")  # but GET / lists them
    assert (status, index) == (200, b"/echo\techo.wasm\n/hash\thash.wasm\n")
    assert request(server, "/missing")[0] == 404


def test_the_request_log_has_a_line_per_request(server, tmp_path_factory):
    log = next(tmp_path_factory.getbasetemp().glob("serve*/requests.log"))
    marker = f"/echo?arg=logged{time.time_ns()}"
    assert request(server, marker, b"xy")[:2] == (200, b"yx logged" + marker.rsplit("logged", 1)[1].encode())
    assert request(server, "/nowhere")[0] == 404
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and "/nowhere" not in log.read_text():
        time.sleep(0.05)
    lines = log.read_text().splitlines()
    [mine] = [line for line in lines if marker in line]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ node=[01] 127\.0\.0\.1 "
                        + re.escape(f'"POST {marker}"') + r" 200 \d+ \d+\.\dms", mine), mine
    assert any(re.search(r'"POST /nowhere" 404 ', line) for line in lines)


def test_traps_limits_and_bad_requests_are_clear_errors(server):
    status, data, headers = request(server, "/echo", b"trap")
    assert status == 500 and b"wasm trap: " in data and data.count(b"\n") == 1
    start = time.monotonic()
    status, data, _ = request(server, "/echo", b"loop")
    assert status == 504 and b"time limit exceeded" in data and time.monotonic() - start < 30
    status, data, headers = request(server, "/echo", b"exit3")
    assert (status, headers["x-mewe-exit"]) == (500, "3") and b"failing on purpose" in data
    status, data, _ = request(server, "/echo", b"hog")  # memory.grow fails at the limit; malloc returns NULL
    assert status == 200 and int(data.split()[2]) < 32
    assert request(server, "/echo", b"x" * 5000)[0] == 413
    assert request(server, "/echo", method="PUT")[0] == 405
    status, data, _ = request(server, "/echo", b"still serving")  # after all that
    assert (status, data) == (200, b"gnivres llits")


def _raw(port: int, data: bytes) -> bytes:
    """Send raw bytes (not necessarily HTTP) and return what comes back before the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_mixed_load_every_request_gets_its_own_clear_answer(server):
    """Good requests, traps, endless loops, memory hogs, oversized and malformed requests, all
    at once from 16 clients: each gets its own status, and good answers are never mixed up."""
    kinds = ["ok", "ok", "ok", "trap", "ok", "loop", "ok", "hog", "ok", "big", "ok", "garbage", "ok", "exit3", "ok", "put"]

    def one(i: int):
        kind = kinds[i % len(kinds)]
        if kind == "ok":
            body = f"load-{i:04d}".encode()
            status, data, _ = request(server, f"/echo?arg=c{i}", body)
            return kind, status == 200 and data == body[::-1] + f" c{i}".encode(), (status, data)
        if kind == "garbage":
            answer = _raw(server, b"\x16\x03\x01 not http at all\r\n\r\n")
            return kind, answer.startswith(b"HTTP/1.") and b" 400 " in answer.split(b"\r\n", 1)[0], answer[:80]
        if kind == "put":
            return kind, request(server, "/echo", method="PUT")[0] == 405, None
        body = {"trap": b"trap", "loop": b"loop", "hog": b"hog", "big": b"x" * 5000, "exit3": b"exit3"}[kind]
        status, data, _ = request(server, "/echo", body)
        expected = {"trap": 500, "loop": 504, "hog": 200, "big": 413, "exit3": 500}[kind]
        return kind, status == expected, (status, data[:80])

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(one, range(96)))
    wrong = [(kind, detail) for kind, ok, detail in results if not ok]
    assert not wrong, wrong
    assert request(server, "/echo", b"after the storm")[:2] == (200, b"mrots eht retfa")


def test_by_default_only_loopback_is_served(server):
    # The fixture gave no --host. A non-loopback address of this machine must refuse.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))  # UDP connect sends nothing: it only picks the outward address
        outward = probe.getsockname()[0]
    if outward.startswith("127."):
        pytest.skip("this machine has no non-loopback IPv4 address")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((outward, server), timeout=10).close()
    assert request(server, "/echo", b"ok")[0] == 200


def test_serve_refuses_bad_modules(tmp_path):
    (tmp_path / "not.wasm").write_text("hello")
    res = mewe("serve", tmp_path / "not.wasm", "--port", "0")
    assert res.returncode == 1 and res.stderr.strip() == f"mewe: error: {tmp_path / 'not.wasm'}: not a wasm module (bad magic or version)"
    res = mewe("serve", tmp_path / "absent.wasm")
    assert res.returncode == 1 and "no such file" in res.stderr


def test_a_killed_node_is_replaced_and_the_service_keeps_answering(tmp_path):
    import signal

    (tmp_path / "echo.c").write_text(ECHO_C)
    assert mewe("build", tmp_path / "echo.c", "-o", tmp_path / "echo.wasm").returncode == 0
    proc = subprocess.Popen([sys.executable, "-m", "mewe", "serve", tmp_path / "echo.wasm", "--port", "0", "--nodes", "2"],
                            stderr=subprocess.PIPE, text=True)
    try:
        port = int(re.search(r":(\d+) \(", proc.stderr.readline()).group(1))
        nodes = child_pids(proc.pid)
        assert len(nodes) == 2
        os.kill(nodes[0], signal.SIGKILL)
        answers = []
        deadline = time.monotonic() + 30
        while len(answers) < 40 and time.monotonic() < deadline:
            try:
                answers.append(request(port, "/echo", b"olleh")[:2])
            except (ConnectionError, http.client.HTTPException):
                pass  # a request that was on the dead node may fail cleanly
        assert answers.count((200, b"hello")) == 40  # the service kept answering
        assert proc.poll() is None
        for _ in range(100):  # the replacement joined: two nodes again, one of them new
            now = child_pids(proc.pid)
            if len(now) == 2 and nodes[0] not in now:
                break
            time.sleep(0.1)
        assert len(now) == 2 and nodes[0] not in now and nodes[1] in now
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
    log = proc.stderr.read()
    assert "edge node" in log and "was killed by SIGKILL; restarting it in" in log


def test_sigterm_drains_the_requests_in_flight(tmp_path):
    import signal

    (tmp_path / "echo.c").write_text(ECHO_C)
    assert mewe("build", tmp_path / "echo.c", "-o", tmp_path / "echo.wasm").returncode == 0
    proc = subprocess.Popen([sys.executable, "-m", "mewe", "serve", tmp_path / "echo.wasm", "--port", "0",
                             "--timeout-ms", "2000"], stderr=subprocess.PIPE, text=True)
    port = int(re.search(r":(\d+) \(", proc.stderr.readline()).group(1))
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(request, port, "/echo", b"loop")  # runs until its 2 s limit
        time.sleep(0.5)
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert slow.result(timeout=15)[0] == 504  # answered, not cut off
    proc.wait(15)
    assert time.monotonic() - start < 8  # within the drain bound
    with pytest.raises(ConnectionError):
        request(port, "/echo", b"x")  # and then the port is closed


def test_a_port_in_use_is_refused(server, tmp_path):
    """The nodes of one server share its port (SO_REUSEPORT); a second server on it is refused
    in one line instead of quietly taking half of its requests."""
    (tmp_path / "echo.c").write_text(ECHO_C)
    assert mewe("build", tmp_path / "echo.c", "-o", tmp_path / "echo.wasm").returncode == 0
    res = mewe("serve", tmp_path / "echo.wasm", "--port", str(server))
    assert res.returncode == 1
    assert res.stderr == f"mewe: error: cannot listen on 127.0.0.1:{server}: Address already in use\n"
    assert request(server, "/echo", b"ba")[:2] == (200, b"ab")  # the first server is untouched
