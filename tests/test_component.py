"""WASI 0.2 components (`--emit component`): built from the examples plain and multivariant,
run by `mewe run` under wasmtime's WASI 0.2 with the same bytes out as the core module; the
errors a user meets (a traced build, a component given to serve or inspect) are one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import EXAMPLES, mewe
from mewe.wasm import COMPONENT_MAGIC, MAGIC

BIN = Path(sys.executable).parent
INPUTS = {"base64": b"multivariant execution at the edge", "sort": b"42\n-7\n19\n3\n3\n1000\n",
          "interp": b"let x = 6\nprint x * 7\nprint fib(15)\n"}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("components")
    paths = {}
    for name in INPUTS:
        for variants in ((0, 3) if name == "base64" else (3,)):  # plain and multivariant
            for emit in ("module", "component"):
                target = out / f"{name}-{variants}-{emit}.wasm"
                res = mewe("build", EXAMPLES / f"{name}.c", "--variants", variants, "--emit", emit, "-o", target)
                assert res.returncode == 0, res.stderr
                paths[name, variants, emit] = target
    return paths


def test_components_run_like_their_modules(built):
    for (name, variants, emit), path in built.items():
        head = path.read_bytes()[:8]
        assert head == (COMPONENT_MAGIC if emit == "component" else MAGIC)
        if emit == "module":
            continue
        module = mewe("run", built[name, variants, "module"], stdin=INPUTS[name])
        component = mewe("run", path, stdin=INPUTS[name])
        assert module.returncode == 0 and component.returncode == 0, component.stderr
        assert component.stdout == module.stdout and module.stdout


def test_the_component_is_reproducible(built, tmp_path):
    again = tmp_path / built["sort", 3, "component"].name  # the name is in the module's name section
    assert mewe("build", EXAMPLES / "sort.c", "--variants", 3, "--emit", "component", "-o", again).returncode == 0
    assert again.read_bytes() == built["sort", 3, "component"].read_bytes()


def test_exit_status_and_traps(tmp_path):
    source = tmp_path / "status.c"
    source.write_text('#include <stdio.h>\n#include <stdlib.h>\n'
                      'int main(int argc, char **argv) { printf("%d %s\\n", argc, argv[argc - 1]);'
                      ' if (argc > 2) abort(); return argc > 1 ? 3 : 0; }\n')
    component = tmp_path / "status.wasm"
    assert mewe("build", source, "--variants", 2, "--emit", "component", "-o", component).returncode == 0
    ok = mewe("run", component)
    assert ok.returncode == 0 and ok.stdout.endswith(b"status.wasm\n")
    failed = mewe("run", component, "hello")
    assert failed.returncode == 1 and failed.stdout == b"2 hello\n"  # WASI 0.2 exits succeed or fail, no code
    trapped = mewe("run", component, "a", "b")
    assert trapped.returncode == 134 and trapped.stdout == b"3 b\n"
    assert trapped.stderr.strip().splitlines() == ["mewe: error: status.wasm: wasm trap: wasm `unreachable` "
                                                   "instruction executed in function 'abort'"]


def test_what_cannot_be_a_component_is_refused_in_one_line(built, tmp_path):
    out = tmp_path / "traced.wasm"
    res = mewe("build", EXAMPLES / "sort.c", "--variants", 2, "--trace", "--emit", "component", "-o", out)
    assert res.returncode == 1 and not out.exists()
    assert res.stderr.strip().splitlines()[-1] == ("mewe: error: traced.wasm: cannot be a component: it imports "
                                                   "mewe.trace, from --trace (traces reach mewe's own hosts and "
                                                   "--emit http answers)")
    component = built["sort", 3, "component"]
    for args in (("inspect", component), ("serve", component, "--port", "0"), ("run", "--policy", "pinned:1", component)):
        res = mewe(*args)
        assert res.returncode == 1 and len(res.stderr.strip().splitlines()) == 1, res.stderr
        assert str(component) in res.stderr
        if args[0] == "serve":
            assert "jco serve or wasmtime serve" in res.stderr
    bad = mewe("build", EXAMPLES / "sort.c", "--emit", "components", "-o", tmp_path / "x.wasm")
    assert bad.returncode == 2 and "invalid choice: 'components'" in bad.stderr


def test_an_http_component_is_a_wasi_http_proxy(tmp_path):
    """`--emit http`: the world a wasi:http host expects (the handler exported; imports from
    wasi:http, io, random and clocks only), traced or not, reproducible; `mewe run` says where
    to serve it."""
    out = tmp_path / "sort.wasm"
    for flags in (["--trace"], []):  # the untraced build last: `out` is used below
        assert mewe("build", EXAMPLES / "sort.c", "--variants", 2, *flags, "--emit", "http", "-o", out).returncode == 0
        assert out.read_bytes()[:8] == COMPONENT_MAGIC
        world = subprocess.run([str(BIN / "wasm-tools"), "component", "wit", str(out)], capture_output=True,
                               text=True, check=True).stdout.split("package wasi:")[0]
        exports = [line.split()[1] for line in world.splitlines() if line.strip().startswith("export ")]
        imports = [line.split()[1] for line in world.splitlines() if line.strip().startswith("import ")]
        assert exports == ["wasi:http/incoming-handler@0.2.3;"]
        assert imports and all(i.split("/")[0] in ("wasi:http", "wasi:io", "wasi:random", "wasi:clocks")
                               for i in imports)
    again = tmp_path / "again" / "sort.wasm"
    again.parent.mkdir()
    assert mewe("build", EXAMPLES / "sort.c", "--variants", 2, "--emit", "http", "-o", again).returncode == 0
    assert again.read_bytes() == out.read_bytes()
    res = mewe("run", out)
    assert res.returncode == 1 and res.stderr.strip() == (f"mewe: error: {out}: a wasi:http component: serve it with "
                                                          "an HTTP host such as `jco serve` or `wasmtime serve` "
                                                          "(see docs/deploy.md)")


def test_mewe_cc_links_a_component(tmp_path):
    """The drop-in driver: -mewe-emit=component (or MEWE_EMIT) at the link step."""
    obj = tmp_path / "sort.o"
    subprocess.run([str(BIN / "mewe-cc"), "-O2", "-c", str(EXAMPLES / "sort.c"), "-o", str(obj)], check=True)
    app = tmp_path / "sort"
    subprocess.run([str(BIN / "mewe-cc"), str(obj), "-o", str(app), "-mewe-emit=component"], check=True)
    assert app.read_bytes()[:8] == COMPONENT_MAGIC
    res = mewe("run", app, stdin=INPUTS["sort"])
    assert res.returncode == 0 and res.stdout == b"-7\n1000\n19\n3\n3\n42\n"  # sort(1) without -n
    bad = subprocess.run([str(BIN / "mewe-cc"), str(obj), "-o", str(tmp_path / "x"), "-mewe-emit=elf"],
                         capture_output=True, text=True)
    assert bad.returncode == 1 and "invalid output kind 'elf' (use module, component or http)" in bad.stderr


def test_a_bad_adapter_is_named(tmp_path):
    fake = tmp_path / "adapter.wasm"
    fake.write_text("not wasm")
    res = subprocess.run([sys.executable, "-m", "mewe", "build", str(EXAMPLES / "base64.c"), "--emit", "component",
                          "-o", str(tmp_path / "b.wasm")], capture_output=True, text=True,
                         env={**os.environ, "MEWE_WASI_ADAPTER": str(fake)})
    assert res.returncode == 1 and res.stderr.strip() == f"mewe: error: MEWE_WASI_ADAPTER: {fake}: not a wasm module"


PREVIEW1 = """args_get args_sizes_get environ_get environ_sizes_get clock_res_get clock_time_get fd_advise
fd_allocate fd_close fd_datasync fd_fdstat_get fd_fdstat_set_flags fd_fdstat_set_rights fd_filestat_get
fd_filestat_set_size fd_filestat_set_times fd_pread fd_prestat_get fd_prestat_dir_name fd_pwrite fd_read
fd_readdir fd_renumber fd_seek fd_sync fd_tell fd_write path_create_directory path_filestat_get
path_filestat_set_times path_link path_open path_readlink path_remove_directory path_rename path_symlink
path_unlink_file poll_oneoff proc_exit proc_raise sched_yield random_get sock_accept sock_recv sock_send
sock_shutdown""".split()


def test_the_http_adapter_provides_all_of_preview1(tmp_path):
    """Any program can be an http component, whatever libc functions it links: the adapter
    exports every WASI preview1 function (those about files and sockets fail at run time, as
    without preopens), and a program calling them builds."""
    from mewe.component import http_adapter
    from mewe.wasm import parse_wasm

    exports = {name for name, kind, _ in parse_wasm(http_adapter().read_bytes()).exports if kind == 0}
    assert set(PREVIEW1) <= exports
    source = tmp_path / "files.c"
    source.write_text(FILES_C)
    res = mewe("build", source, "--variants", 2, "--emit", "http", "-o", tmp_path / "files.wasm")
    assert res.returncode == 0, res.stderr


FILES_C = r"""#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
/* What a service might try on a host without files: each fails, and says how. */
int main(void) {
    struct stat st;
    FILE *f = fopen("/etc/config", "r");
    printf("fopen: %s\n", f ? "opened" : strerror(errno));
    printf("stat: %d %s\n", stat("data.txt", &st), strerror(errno));
    printf("opendir: %s\n", opendir(".") ? "opened" : strerror(errno));
    printf("mkdir: %d %s\n", mkdir("tmp", 0700), strerror(errno));
    printf("unlink: %d %s\n", unlink("x"), strerror(errno));
    printf("fstat(stdout): %d\n", fstat(1, &st));
    printf("clock: %d\n", time(NULL) > 1700000000);
    return 0;
}
"""


def test_renaming_an_import_changes_nothing_else(tmp_path):
    """How a traced build's `mewe.trace` reaches the http adapter: the import is renamed in
    place, every other byte kept (renaming it back gives the module again)."""
    from mewe.wasm import parse_wasm, rename_import

    module = tmp_path / "traced.wasm"
    assert mewe("build", EXAMPLES / "base64.c", "--variants", 2, "--trace", "-o", module).returncode == 0
    data = module.read_bytes()
    renamed = rename_import(data, ("mewe", "trace"), ("wasi_snapshot_preview1", "mewe_trace"))
    before, after = parse_wasm(data).imports, parse_wasm(renamed).imports
    assert [i for i in before if i[0] != "mewe"] == [i for i in after if i[1] != "mewe_trace"]
    assert ("wasi_snapshot_preview1", "mewe_trace", 0) in after and ("mewe", "trace", 0) not in after
    assert rename_import(renamed, ("wasi_snapshot_preview1", "mewe_trace"), ("mewe", "trace")) == data


def test_the_http_adapter_hashes_traces_as_mewe_serve_does():
    """The adapter's SHA-256 (WAT) of trace batches equals hashlib's, for every padding case
    (0 to 40 pairs in one batch) and for a trace that arrives in uneven batches. Run on the
    adapter's own code, with its init and final steps exported for the test."""
    import hashlib
    import random

    import wasmtime

    from mewe.component import wasm_tools

    wat = (Path(__file__).parents[1] / "runtime" / "http_adapter.wat").read_text()
    wat = wat.replace("(func $init", '(func $init (export "init")', 1)
    wat = wat.replace("(func $sha_final", '(func $sha_final (export "final")', 1)
    engine = wasmtime.Engine()
    module = wasmtime.Module(engine, subprocess.run([wasm_tools(), "parse", "-"], input=wat.encode(),
                                                    capture_output=True, check=True).stdout)
    pairs = random.Random(5).randbytes(8 * 600)

    def digest(batches: list[int]) -> str:
        store = wasmtime.Store(engine)
        memory = wasmtime.Memory(store, wasmtime.MemoryType(wasmtime.Limits(1, None)))
        imports = [memory if imp.name == "memory" else wasmtime.Func(store, imp.type, lambda *a: None)
                   for imp in module.imports]
        exports = wasmtime.Instance(store, module, imports).exports(store)
        exports["init"](store)
        memory.write(store, pairs, 0)  # below the pages the adapter grows for itself
        done = 0
        for count in batches:
            exports["mewe_trace"](store, 8 * done, count)
            done += count
        exports["final"](store)
        scratch = 65536  # the first page the adapter grew
        return bytes(memory.read(store, scratch + 864, scratch + 928)).decode()

    for n in range(41):
        assert digest([n]) == hashlib.sha256(pairs[:8 * n]).hexdigest(), n
    batches = [1, 7, 0, 8, 9, 64, 100, 3, 256]
    assert digest(batches) == hashlib.sha256(pairs[:8 * sum(batches)]).hexdigest()
