"""The compile server behind `mewe-cc`: a configure script runs hundreds of tiny compiles, and
each would otherwise pay for starting Python and importing LLVM, wasmtime and the passes.

`mewe-cc` is this module's `cc_main`, a client that imports only the standard library. It
hands its command line, working directory, environment and its stdin, stdout and stderr
(passed as file descriptors over a Unix socket) to a per-user server, which forks a child per
request from a process that has the toolchain imported; the child runs `mewe.cc.main` exactly
as `mewe-cc` would in-process, writing straight to the client's terminal or pipes, and sends
back the exit status. Outputs are therefore the same bytes either way.

The server starts on demand, with a socket under the cache directory named after the Python,
its search path and the installed mewe's files (an upgrade or an edit starts a new server),
and exits after `MEWE_SERVER_IDLE` seconds without requests (default 600). `MEWE_SERVER=0`
runs every compile in-process; so does any failure to reach a server. Ctrl-C on a client
interrupts its request. `mewe server status|stop` shows or stops the servers.
"""

from __future__ import annotations

import os
import sys
from _socket import AF_UNIX, SCM_RIGHTS, SOCK_STREAM, SOL_SOCKET
from _socket import socket as _raw_socket  # socket.py costs a client 4 ms of imports (enum, selectors)
from struct import Struct, error

IDLE_S = 600  # seconds without requests before a server exits
START_S = 20  # how long a client waits for a server it started to answer
HEADER = Struct("!I")  # the request's length; the reply is a signed exit status
STATUS = Struct("!i")
FDS = Struct("3i")  # the client's stdin, stdout and stderr, passed along with the header
PACKAGES = ("mewe", "mewe.frontends", "mewe.passes", "mewe.linker", "mewe.runtime")


# -- the client (standard library only) --------------------------------------------------

def _cache_dir() -> str:
    """$MEWE_CACHE_DIR/server (mewe.fsutil.cache_dir's rule, without importing it)."""
    base = os.environ.get("MEWE_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "mewe")
    return os.path.join(base, "server")


def _stamp() -> str:
    """What a server must share with its clients: the interpreter, its search path (plugins
    come from it) with the distributions installed there (the server keeps the entry points and
    versions it read: an install, upgrade or removal names another *.dist-info), and mewe's
    files, by name, size and modification time."""
    try:  # hashlib's own import costs a client 3 ms
        from _sha256 import sha256
    except ImportError:
        from hashlib import sha256
    import mewe

    h = sha256(repr((sys.executable, sys.version, sys.path)).encode())
    for folder in sys.path:
        try:
            names = os.listdir(folder or ".")
        except OSError:
            continue
        h.update(repr(sorted(n for n in names if n.endswith((".dist-info", ".egg-info")))).encode())
    for package in PACKAGES:
        for folder in _locations(package, mewe.__path__):
            for root, dirs, files in os.walk(folder):
                dirs[:] = sorted(d for d in dirs if d != "__pycache__")
                for name in sorted(files):
                    st = os.stat(os.path.join(root, name))
                    h.update(f"{root}/{name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _locations(package: str, parent_path: list[str]) -> list[str]:
    """Where `package` (a subpackage of mewe, or mewe) is found, as importlib.util.find_spec
    would say (its import costs a client 3 ms), without importing it."""
    if package == "mewe":
        return list(parent_path)
    for finder in sys.meta_path:
        find = getattr(finder, "find_spec", None)
        spec = find(package, parent_path) if find else None
        if spec is not None:
            return list(spec.submodule_search_locations or [])
    return []


def encode_request(argv: list[str], cwd: str, env: dict[str, str]) -> bytes:
    """A request's body: NUL-separated (no argument, path or variable can hold a NUL)."""
    fields = [cwd, str(len(argv)), *argv, *(f"{k}={v}" for k, v in env.items())]
    return b"\0".join(os.fsencode(f) for f in fields)


def decode_request(body: bytes) -> dict:
    """`encode_request`'s fields back: {"argv": [...], "cwd": ..., "env": {...}}."""
    fields = [os.fsdecode(f) for f in body.split(b"\0")]
    n = int(fields[1])
    argv, env = fields[2:2 + n], dict(f.partition("=")[::2] for f in fields[2 + n:])
    return {"argv": argv, "cwd": fields[0], "env": env}


def socket_path() -> str:
    return os.path.join(_cache_dir(), f"cc-{_stamp()}.sock")


def _connect(path: str) -> _raw_socket | None:
    sock = _raw_socket(AF_UNIX, SOCK_STREAM)
    try:
        sock.connect(path)
        return sock
    except OSError:
        sock.close()
        return None


def _start(path: str) -> _raw_socket | None:
    """Start a server at `path` (one client at a time does, under a lock) and connect to it."""
    import fcntl
    import subprocess
    import time

    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        sock = _connect(path)  # another client may have started it while we waited
        if sock:
            return sock
        with open(path + ".log", "ab") as log:
            # Started in its own folder, which `-m` puts first on its path: a client's working
            # directory might hold modules that shadow the standard library's.
            subprocess.Popen([sys.executable, "-m", "mewe.server", path], cwd=os.path.dirname(path),
                             stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, close_fds=True)
        deadline = time.monotonic() + START_S
        while time.monotonic() < deadline:
            sock = _connect(path)
            if sock:
                return sock
            time.sleep(0.02)
    return None


def request(argv: list[str]) -> int | None:
    """Run `mewe-cc argv` on the server; its exit status, or None if no server could take it."""
    path = socket_path()
    if len(path.encode()) > 100:  # sun_path holds about 108 bytes
        return None
    sock = _connect(path) or _start(path)
    if sock is None:
        return None
    try:  # (a raw socket is no context manager)
        body = encode_request(argv, os.getcwd(), dict(os.environ))
        try:
            sock.sendmsg([HEADER.pack(len(body))], [(SOL_SOCKET, SCM_RIGHTS, FDS.pack(0, 1, 2))])
            sock.sendall(body)
            reply = b""
            while len(reply) < STATUS.size:
                chunk = sock.recv(STATUS.size - len(reply))
                if not chunk:
                    return None  # the server went away before answering: compile here instead
                reply += chunk
        except OSError:
            return None
    finally:
        sock.close()
    return STATUS.unpack(reply)[0]


def cc_main() -> int:
    """`mewe-cc`: through the compile server, or in-process (MEWE_SERVER=0, or no server)."""
    if os.environ.get("MEWE_SERVER", "1") != "0" and hasattr(_raw_socket, "sendmsg"):
        try:
            status = request(sys.argv[1:])
        except KeyboardInterrupt:  # the socket is closed: the server interrupts the request
            return 130
        if status is not None:
            return status
    from mewe.cc import main

    return main()


# -- the server ----------------------------------------------------------------------------

def serve(path: str, idle: float) -> None:
    """Answer requests at `path` until `idle` seconds pass without any."""
    import gc
    import selectors
    import signal
    import socket
    import time

    _warm_up()
    gc.freeze()  # the collector then leaves the warm objects alone: requests' forks copy fewer pages

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        os.unlink(path)  # a dead server's socket (clients start servers under a lock)
    except FileNotFoundError:
        pass
    listener.bind(path)
    listener.listen(64)
    inode = os.stat(path).st_ino
    with open(path + ".pid", "w") as f:
        f.write(f"{os.getpid()}\n")
    stopping = False

    def stop(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # not the terminal's: clients interrupt requests
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ)
    running: dict[int, socket.socket] = {}  # child pid -> its client's connection
    cancelled: dict[int, float] = {}  # child pid -> when it was interrupted
    last = time.monotonic()
    try:
        while not stopping and (running or time.monotonic() - last < idle):
            for key, _ in sel.select(timeout=0.5):
                if key.fileobj is listener:
                    conn, _ = listener.accept()
                    last = time.monotonic()
                    request = _read_request(conn)
                    if request is None:
                        continue
                    pid = _fork_request(conn, *request, [listener, *running.values()])
                    running[pid] = conn
                    sel.register(conn, selectors.EVENT_READ, pid)
                elif key.data in running and key.data not in cancelled:  # the client hung up early
                    _signal_group(key.data, signal.SIGINT)
                    cancelled[key.data] = time.monotonic()
                    sel.unregister(key.fileobj)
            for pid, since in cancelled.items():
                if time.monotonic() - since > 5:
                    _signal_group(pid, signal.SIGKILL)
            while True:  # reap the requests that ended
                try:
                    pid, _ = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if not pid:
                    break
                conn = running.pop(pid, None)
                cancelled.pop(pid, None)
                if conn:
                    try:
                        sel.unregister(conn)
                    except (KeyError, ValueError):
                        pass
                    conn.close()
                last = time.monotonic()
    finally:
        try:
            if os.stat(path).st_ino == inode:
                os.unlink(path)
                os.unlink(path + ".pid")
        except OSError:
            pass


WARM_UP_IR = """target triple = "wasm32-unknown-wasi"
define i32 @f(i32 %a, i32 %b) {
  %s = mul i32 %a, %b
  %t = add i32 %s, 7
  %u = xor i32 %t, %a
  %c = icmp slt i32 %u, %b
  %r = select i1 %c, i32 %u, i32 %t
  ret i32 %r
}
"""


def _warm_up() -> None:
    """Load, once and before forking, what every request would otherwise load for itself: the
    toolchain's modules, z3 (the synthesize pass), LLVM's targets. Only what no client's
    settings or environment can change: requests run with their own."""
    import mewe.cc  # noqa: F401
    import mewe.linker  # noqa: F401
    import mewe.passes  # noqa: F401
    import mewe.pipeline  # noqa: F401
    import mewe.separate  # noqa: F401

    from mewe import passes
    from mewe.frontends import load_ir
    from mewe.linker.codegen import target_machine
    from mewe.llvmir import parse_module
    from mewe.passes import cache, rules

    rules.installed_entry_points(rules.RULES_GROUP)  # plugins are looked up by every request: 7 ms
    cache.dist_versions()  # llvmlite's and z3's, read from their metadata: 4 ms
    # What LLVM, z3 and the passes set up on first use (tables, compiled regexes, z3's
    # modules): 30-60 ms a request. A fixed function diversified by each built-in pass and
    # code-generated here (a tiny module: LLVM does not abort on it, so no child is needed).
    module = parse_module(WARM_UP_IR)
    unit = load_ir("warm-up", module.as_bitcode(), origin="warm-up")
    for name in [n for n, cls in passes.registry.items() if cls.__module__.startswith("mewe.passes.")]:
        try:
            passes.diversify(unit, variants=2, seed=0, passes=[name], jobs=1, cache=False)
        except Exception:  # noqa: BLE001  (a broken plugin, say: each request reports it)
            pass
    target_machine(module.triple).emit_object(module)


def _signal_group(pid: int, signum: int) -> None:
    try:
        os.killpg(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _read_request(conn) -> tuple[list[int], dict] | None:
    """The client's stdin, stdout and stderr and its request (see `decode_request`), read from
    `conn`; None (and `conn` closed) if the request is malformed."""
    import socket

    conn.settimeout(10)
    try:
        head, fds, _, _ = socket.recv_fds(conn, HEADER.size, 3)
        size = HEADER.unpack(head)[0]
        body = b""
        while len(body) < size:
            chunk = conn.recv(min(1 << 16, size - len(body)))
            if not chunk:
                raise OSError("short request")
            body += chunk
        req = decode_request(body)
    except (OSError, ValueError, IndexError, error):
        conn.close()
        return None
    if len(fds) != 3:
        for fd in fds:
            os.close(fd)
        conn.close()
        return None
    return fds, req


def _fork_request(conn, fds: list[int], req: dict, inherited: list) -> int:
    """Fork a child that runs the request; its pid. It closes the server's sockets it
    `inherited` (a client learns that its request died when its connection closes)."""
    pid = os.fork()
    if pid:
        for fd in fds:
            os.close(fd)
        return pid
    for sock in inherited:
        sock.close()
    os.setpgid(0, 0)  # its own group: an interrupt reaches the tools it runs too
    status = 1
    try:  # the child: becomes the client's mewe-cc
        import gc
        import resource
        import signal

        from mewe.linker import codegen

        gc.disable()  # a short life: a collection would only copy pages the server shares
        codegen.DISPOSABLE = True  # an LLVM abort ends this request only: the client then compiles in-process
        resource.setrlimit(resource.RLIMIT_CORE, (0, resource.getrlimit(resource.RLIMIT_CORE)[1]))  # and dumps no core
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(req["cwd"])
        os.environ.clear()
        os.environ.update(req["env"])
        sys.argv = ["mewe-cc", *req["argv"]]
        from mewe.cc import main

        status = main(req["argv"])
        sys.stdout.flush()
        sys.stderr.flush()
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # done: the client hanging up now interrupts nothing
        conn.settimeout(None)
        conn.sendall(STATUS.pack(status))
    except BaseException as exc:  # noqa: BLE001  (reported to the client's stderr; it falls back)
        try:
            os.write(2, f"mewe-cc: error: compile server: {exc!r}\n".encode())
        except OSError:
            pass
    finally:
        os._exit(0)


def servers() -> list[tuple[str, int | None]]:
    """The servers' sockets under this user's cache directory, with their pids."""
    folder = _cache_dir()
    out = []
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        if name.endswith(".sock"):
            path = os.path.join(folder, name)
            try:
                with open(path + ".pid") as f:
                    pid: int | None = int(f.read())
                os.kill(pid, 0)
            except (OSError, ValueError):
                pid = None
            out.append((path, pid))
    return out


def main() -> None:
    """`python -m mewe.server SOCKET`: a server (clients start it; nobody needs to by hand)."""
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m mewe.server SOCKET")
    serve(sys.argv[1], float(os.environ.get("MEWE_SERVER_IDLE", IDLE_S)))


if __name__ == "__main__":
    main()
