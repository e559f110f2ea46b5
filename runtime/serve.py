"""`mewe serve`: an edge-node emulator for WASI services, over HTTP.

Each service (a WASI command module) answers at `/<name>` (its file name without `.wasm`), and
a lone service at `/` too. A request runs the module CGI-style, as WASI edge hosts do: the
request body is stdin, `?arg=A&arg=B` are its arguments, stdout is the response body. Every
request gets a fresh instance (so fresh RNG state for the dispatchers); modules are compiled
once per node.

`nodes` worker processes act as edge nodes, each listening on the same port (SO_REUSEPORT):
the kernel spreads connections over them by address hash, and each answers with its node id
(`X-Mewe-Node`). Within a
node, requests run concurrently in threads. Limits per request: wall time (epoch
interruption), linear memory, body size. Answers:

    200  exit status 0: the module's stdout
    500  nonzero exit status (X-Mewe-Exit), or a trap: one line saying which
    504  the wall-time limit hit
    413  body too large;  404  no such service;  405  not GET/POST

For modules built with tracing, `X-Mewe-Trace` is the SHA-256 of the dispatch sequence (its
(dispatcher id, variant) pairs as little-endian u32s) and `X-Mewe-Trace-Length` its length.

The server supervises its nodes as an edge platform does: a node that exits or is killed is
replaced (after a short backoff, with one log line) while the others keep the port open; its
in-flight requests see their connection closed, never a hang. A node that crashes at start-up
MAX_START_FAILURES times in a row stops the server with one error line. SIGTERM (or Ctrl-C)
drains: nodes stop accepting and finish what they are running, for up to DRAIN_S seconds.
"""

from __future__ import annotations

import http.server
import multiprocessing
import multiprocessing.synchronize
import os
import signal
import socket
import sys
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from mewe.errors import MeweError

EPOCH_TICK_S = 0.01
RESTART_BACKOFF_S = (0.1, 5.0)  # first delay before replacing a dead node, and the longest
MAX_START_FAILURES = 3  # start-up crashes in a row before the server gives up on a node
DRAIN_S = 5.0  # how long a stopping node may spend finishing its requests


@dataclass(frozen=True)
class Limits:
    """What one request may use."""

    wall_ms: int = 10_000
    memory_mb: int = 256
    body_bytes: int = 16 << 20


def service_names(modules: Sequence[str | os.PathLike]) -> dict[str, Path]:
    """Route name -> module; raises MeweError for missing files, non-wasm files and clashes."""
    from mewe.wasm import COMPONENT_MAGIC, not_a_module

    routes: dict[str, Path] = {}
    for module in modules:
        path = Path(module)
        if not path.is_file():
            raise MeweError(f"{path}: no such file")
        with open(path, "rb") as fh:
            head = fh.read(8)
        if head == COMPONENT_MAGIC:  # wasmtime's Python API cannot hand a component an incoming request
            raise MeweError(f"{path}: a WASI component; mewe serve runs core modules (build it with --emit "
                            "module), and an http component runs under jco serve or wasmtime serve (docs/deploy.md)")
        why = not_a_module(head)
        if why:
            raise MeweError(f"{path}: {why}")
        name = path.name.removesuffix(".wasm")
        if name in routes:
            raise MeweError(f"two services are called '{name}': {routes[name]} and {path}")
        routes[name] = path
    if not routes:
        raise MeweError("no services to serve")
    return routes


class _Node:
    """One edge node: an engine, the compiled services, and an epoch ticker for deadlines."""

    def __init__(self, node_id: int, routes: dict[str, Path], limits: Limits):
        import wasmtime

        from .host import engine_config, load_module

        self.node_id, self.limits = node_id, limits
        config = engine_config(cache=True)  # a restarted node loads its services without compiling them
        config.epoch_interruption = True
        self.engine = wasmtime.Engine(config)
        self.services = {name: load_module(self.engine, path) for name, path in routes.items()}
        self.traced = {name for name, (wasm, _) in self.services.items()
                       if any(imp.module == "mewe" and imp.name == "trace" for imp in wasm.imports)}
        self.paths = routes
        threading.Thread(target=self._tick, daemon=True).start()

    def _tick(self) -> None:
        while True:
            time.sleep(EPOCH_TICK_S)
            self.engine.increment_epoch()

    def handle(self, name: str, args: list[str], body: bytes) -> tuple[int, bytes, dict[str, str]]:
        import wasmtime

        from .host import TraceDigest, Trapped, execute

        wasm, dispatchers = self.services[name]
        headers = {"X-Mewe-Node": str(self.node_id)}
        with tempfile.TemporaryDirectory(prefix="mewe-req-") as tmp:
            stdin, stdout, stderr = (Path(tmp) / n for n in ("stdin", "stdout", "stderr"))
            stdin.write_bytes(body)
            config = wasmtime.WasiConfig()
            config.argv = [name, *args]
            config.stdin_file, config.stdout_file, config.stderr_file = str(stdin), str(stdout), str(stderr)
            store = wasmtime.Store(self.engine)
            store.set_limits(memory_size=self.limits.memory_mb << 20)
            store.set_epoch_deadline(max(1, round(self.limits.wall_ms / 1000 / EPOCH_TICK_S)))
            trace = TraceDigest() if name in self.traced else None
            try:
                status = execute(self.engine, wasm, dispatchers, config, self.paths[name], trace=trace, store=store)
            except Trapped as trap:
                if trap.interrupted:
                    return 504, f"time limit exceeded ({self.limits.wall_ms} ms)\n".encode(), headers
                return 500, (trap.message + "\n").encode(), headers
            except MeweError as err:
                return 500, (err.message + "\n").encode(), headers
            except Exception as exc:  # noqa: BLE001 -- a request must get an answer, whatever failed
                return 500, f"internal error: {type(exc).__name__}: {exc}\n".encode(), headers
            if trace is not None:
                headers.update({"X-Mewe-Trace": trace.hexdigest(), "X-Mewe-Trace-Length": str(trace.length)})
            headers["X-Mewe-Exit"] = str(status)
            if status != 0:
                detail = stderr.read_bytes()[-4096:] or f"exit status {status}\n".encode()
                return 500, detail, headers
            return 200, stdout.read_bytes(), headers


def _request_logger(path: str | None) -> Callable[[str], None] | None:
    """A node's request log: lines appended to `path` ("-": stderr), one write each, so the
    lines of several nodes do not interleave."""
    if path is None:
        return None
    fd = 2 if path == "-" else os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    return lambda line: os.write(fd, (line + "\n").encode("utf-8", "replace"))


def _handler(node: _Node, routes: dict[str, Path], log: Callable[[str], None] | None = None
             ) -> type[http.server.BaseHTTPRequestHandler]:
    single = next(iter(routes)) if len(routes) == 1 else None
    index = "".join(f"/{name}\t{path.name}\n" for name, path in routes.items()).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "mewe-serve"
        protocol_version = "HTTP/1.1"
        # Malformed requests get a status line too (not HTTP/0.9's bare body), and every error
        # body is one plain-text line, like the service errors.
        default_request_version = "HTTP/1.0"
        error_content_type = "text/plain"
        error_message_format = "%(message)s\n"

        def log_message(self, fmt, *args):  # quiet: one line per request is noise under load
            pass

        def _answer(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            if log is not None:  # what a common access log has: when, who, what, status, size, time
                elapsed = (time.perf_counter() - self.started) * 1e3 if hasattr(self, "started") else 0.0
                stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                log(f"{stamp} node={node.node_id} {self.client_address[0]} \"{self.command} {self.path}\" "
                    f"{status} {len(body)} {elapsed:.1f}ms")
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream" if status == 200 else "text/plain")
            self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

        def _serve(self) -> None:
            self.started = time.perf_counter()
            url = urllib.parse.urlsplit(self.path)
            name = url.path.strip("/") or single
            if name is None and self.command == "GET":  # several services: / lists their routes
                return self._answer(200, index, {"X-Mewe-Node": str(node.node_id)})
            if name not in routes:
                return self._answer(404, f"no service at {url.path}\n".encode(), {"X-Mewe-Node": str(node.node_id)})
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                return self._answer(400, b"bad Content-Length\n")
            if length < 0 or length > node.limits.body_bytes:
                self.close_connection = True
                if 0 < length <= 4 * node.limits.body_bytes + (1 << 20):  # drain it, so the client reads the 413
                    self.rfile.read(length)
                return self._answer(413, f"body larger than {node.limits.body_bytes} bytes\n".encode())
            body = self.rfile.read(length) if length else b""
            args = urllib.parse.parse_qs(url.query, keep_blank_values=True).get("arg", [])
            self._answer(*node.handle(name, args, body))

        do_GET = do_POST = _serve

        def _refuse(self) -> None:
            self.started = time.perf_counter()
            self._answer(405, b"use GET or POST\n", {"Allow": "GET, POST"})

        do_PUT = do_DELETE = do_PATCH = _refuse

    return Handler


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True


def _die_with_parent() -> None:
    """Linux: the kernel stops this node when the server process goes, however it goes."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


M_ARENA_MAX = -8  # glibc's mallopt parameter


def _few_malloc_arenas() -> None:
    """glibc gives threads their own malloc arenas (up to 8 per core), each keeping the memory
    freed in it: a node's many short request threads would spread over all of them and its
    resident memory would creep up for minutes. Two arenas keep it flat."""
    try:
        import ctypes

        ctypes.CDLL(None).mallopt(M_ARENA_MAX, 2)
    except (OSError, AttributeError):
        pass


class _Draining(_Server):
    daemon_threads = False  # server_close() waits for the requests in flight
    block_on_close = True


def _node_main(address: tuple[str, int], node_id: int, routes: dict[str, Path], limits: Limits,
               ready: multiprocessing.synchronize.Event, request_log: str | None = None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides; it sends SIGTERM
    _die_with_parent()
    _few_malloc_arenas()
    node = _Node(node_id, routes, limits)  # compile first: a listening node answers at once
    server = _Draining(address, _handler(node, routes, _request_logger(request_log)), bind_and_activate=False)
    server.socket = socket.create_server(address, backlog=256, reuse_port=True)

    def drain(signum, frame):  # stop accepting, let the requests in flight finish, then go
        threading.Thread(target=server.shutdown, daemon=True).start()
        threading.Timer(DRAIN_S, lambda: os._exit(0)).start()

    signal.signal(signal.SIGTERM, drain)
    ready.set()
    server.serve_forever()
    server.socket.close()  # no new connections reach this node while it drains
    server.server_close()
    os._exit(0)


def _terminate(signum, frame):
    raise SystemExit(128 + signum)  # run serve's cleanup: stop the nodes


class _Supervisor:
    """Starts the nodes and keeps `count` of them running."""

    def __init__(self, address: tuple[str, int], count: int, routes: dict[str, Path], limits: Limits,
                 request_log: str | None = None):
        self.address, self.routes, self.limits, self.request_log = address, routes, limits, request_log
        self.context = multiprocessing.get_context("fork")  # wasmtime starts in the nodes, after the fork
        self.workers: list = [None] * count
        self.ready: list = [None] * count
        self.failures = [0] * count  # start-up crashes in a row
        self.due = [0.0] * count  # when a dead node may be replaced

    def start(self, k: int) -> None:
        self.ready[k] = self.context.Event()
        self.workers[k] = self.context.Process(target=_node_main, daemon=True,
                                               args=(self.address, k, self.routes, self.limits, self.ready[k],
                                                     self.request_log))
        self.workers[k].start()

    def all_ready(self) -> bool:
        return all(e.is_set() for e in self.ready)

    def check(self, log: Callable[[str], None]) -> None:
        """Replace dead nodes; MeweError if one keeps crashing before it is ready."""
        now = time.monotonic()
        for k, worker in enumerate(self.workers):
            if worker.is_alive():
                if self.ready[k].is_set():
                    self.failures[k] = 0
                continue
            if self.due[k] == 0.0:  # just found dead
                started = self.ready[k].is_set()
                self.failures[k] = 0 if started else self.failures[k] + 1
                if self.failures[k] >= MAX_START_FAILURES:
                    raise MeweError(f"edge node {k} crashed {self.failures[k]} times while starting; see its errors above")
                delay = min(RESTART_BACKOFF_S[1], RESTART_BACKOFF_S[0] * 2 ** self.failures[k])
                log(f"edge node {k} {_how(worker.exitcode)}; restarting it in {delay:.1f} s")
                self.due[k] = now + delay
            elif now >= self.due[k]:
                self.due[k] = 0.0
                self.start(k)

    def stop(self) -> None:
        """Drain every node (SIGTERM), then make sure they are gone."""
        for worker in self.workers:
            if worker is not None and worker.is_alive():
                worker.terminate()
        deadline = time.monotonic() + DRAIN_S + 1
        for worker in self.workers:
            if worker is not None:
                worker.join(max(0.0, deadline - time.monotonic()))
                if worker.is_alive():
                    worker.kill()
                    worker.join(1)


def _how(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return f"was killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"was killed by signal {-exitcode}"
    return f"exited with status {exitcode}"


def serve(
    modules: Sequence[str | os.PathLike],
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    nodes: int = 1,
    limits: Limits = Limits(),
    ready: Callable[[str, int], None] | None = None,
    stop: threading.Event | None = None,
    log: Callable[[str], None] = lambda line: print(f"mewe serve: {line}", file=sys.stderr, flush=True),
    request_log: str | os.PathLike | None = None,
) -> None:
    """Serve `modules` over HTTP on `host:port` (loopback by default) with `nodes` worker
    processes, until interrupted or `stop` is set, replacing nodes that die. `ready(host, port)`
    is called once the nodes accept connections (port 0 picks a free port); `log` gets the
    supervisor's lines (a node died, restarting). `request_log`, a file ("-": stderr), gets a
    line per request: time, node, client, request line, status, body bytes, milliseconds."""
    routes = service_names(modules)
    if request_log is not None and str(request_log) != "-":
        try:
            os.close(os.open(request_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644))
        except OSError as exc:
            raise MeweError(f"cannot write the request log '{request_log}': {exc.strerror or exc}") from None
    if nodes < 1:
        raise MeweError("--nodes must be at least 1")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if port:  # SO_REUSEPORT would let a second server share the port: probe without it first
        with socket.socket(family) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a TIME_WAIT from our last run is fine
            try:
                probe.bind((host, port))
            except OSError as exc:
                raise MeweError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    # Hold the port (bound, not listening) so port 0 gives one port all nodes then listen on.
    holder = socket.socket(family)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        holder.bind((host, port))
    except OSError as exc:
        holder.close()
        raise MeweError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    address = holder.getsockname()[:2]
    nodes_ = _Supervisor(address, nodes, routes, limits, None if request_log is None else str(request_log))
    for k in range(nodes):
        nodes_.start(k)
    previous = signal.signal(signal.SIGTERM, _terminate) if threading.current_thread() is threading.main_thread() else None
    try:
        while not nodes_.all_ready():
            nodes_.check(log)
            time.sleep(0.05)
        if ready:
            ready(address[0], address[1])
        while not (stop and stop.is_set()):
            nodes_.check(log)
            time.sleep(0.1)
    finally:
        nodes_.stop()
        holder.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


__all__ = ["serve", "Limits", "service_names"]
