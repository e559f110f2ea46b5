"""The libsodium edge services (services/*.c), built with mewe-cc against the multivariant,
traced libsodium of the `libsodium` fixture: right answers, and diverse paths when served."""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, mewe

from mewe.wasm import DISPATCH_SECTION, custom_section

SERVICES = ("encrypt", "decrypt", "random", "invert", "bin2base64")
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def services(libsodium, tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("services")
    lib = libsodium / "src" / "libsodium"
    built = {}
    for name in SERVICES:
        target = out / f"{name}.wasm"
        proc = subprocess.run([str(BIN / "mewe-cc"), "-O2", "-mewe-trace=1", f"-I{lib / 'include'}",
                               str(ROOT / "services" / f"{name}.c"), f"-L{lib / '.libs'}", "-lsodium",
                               "-o", str(target), "-mewe-manifest"], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        built[name] = target
    return built


def call(module: Path, body: bytes, *args: str) -> tuple[int, bytes]:
    res = mewe("run", module, *args, stdin=body)
    return res.returncode, res.stdout


def test_services_answer_correctly(services):
    status, sealed = call(services["encrypt"], b"multivariant edge")
    assert status == 0 and re.fullmatch(rb"[0-9a-f]{114}\n", sealed)  # 24-byte nonce + 16-byte tag + 17 bytes
    assert call(services["decrypt"], sealed) == (0, b"multivariant edge")
    forged = sealed[:60] + (b"0" if sealed[60:61] != b"0" else b"1") + sealed[61:]
    assert call(services["decrypt"], forged)[0] == 2
    assert call(services["bin2base64"], b"hi!") == (0, b"aGkh\n")
    two = "02" + "00" * 31
    half = "f7e97a2e8d31092c6bce7b51ef7c6f0a00000000000000000000000000000008"  # (L + 1) / 2
    assert call(services["invert"], two.encode()) == (0, half.encode() + b"\n")
    first, second = call(services["random"], b"16"), call(services["random"], b"16")
    assert first[0] == 0 and len(first[1]) == 33 and first != second
    for name, module in services.items():
        manifest = json.loads(module.with_name(f"{name}.manifest.json").read_text())
        totals = manifest["totals"]
        assert totals["dispatched"] >= 0.95 * totals["functions"], name  # library and service, diversified
        assert custom_section(module.read_bytes(), DISPATCH_SECTION)


def test_served_paths_differ_on_every_call(services):
    proc = subprocess.Popen([sys.executable, "-m", "mewe", "serve", *map(str, services.values()), "--port", "0",
                             "--nodes", "2"], stderr=subprocess.PIPE, text=True)
    try:
        port = int(re.search(r":(\d+) \(", proc.stderr.readline()).group(1))
        for name, body in (("invert", b"02" + b"00" * 31), ("bin2base64", b"edge"), ("encrypt", b"edge")):
            traces = set()
            for _ in range(25):
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                conn.request("POST", f"/{name}", body=body)
                resp = conn.getresponse()
                assert resp.status == 200, resp.read()
                resp.read()
                traces.add(resp.getheader("X-Mewe-Trace"))
                conn.close()
            assert len(traces) == 25, name  # same input, a different path every time
    finally:
        proc.terminate()
        proc.wait(10)
