"""The evaluation (benchmarks/edge.py) on a real small run over two example services, and
`mewe report` rendering it: the page's numbers are the run's."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from conftest import EXAMPLES, load_benchmark, mewe

BODIES = {"base64": b"multivariant execution at the edge", "sort": b"5\n3\n9\n1\n"}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    edge = load_benchmark("edge")
    tmp = tmp_path_factory.mktemp("edge")
    services = {"plain": {}, "multivariant": {}}
    for name in BODIES:
        for kind, flags in (("plain", []), ("multivariant", ["--variants", "3", "--trace"])):
            out = tmp / kind / f"{name}.wasm"
            out.parent.mkdir(exist_ok=True)
            res = mewe("build", EXAMPLES / f"{name}.c", *flags, "-o", out)
            assert res.returncode == 0, res.stderr
            services[kind][name] = out
    data = {"settings": {"variants": 3, "nodes": 2, "calls": 8, "runs": 6, "rq4_runs": 6},
            "reference": {name: edge.REFERENCE["bin2base64"] for name in BODIES}}
    data["rq1"] = edge.rq1(services)
    data["rq2_rq3"] = edge.rq2_rq3(services["multivariant"], BODIES, nodes=2, calls=8)
    data["overhead"] = edge.overhead(services, BODIES, runs=6, tmp=tmp)
    data["rq4"] = edge.rq4(services["multivariant"], BODIES, runs=6, widest=4, tmp=tmp)
    data["seconds"] = 1.0
    path = tmp / "edge.json"
    path.write_text(json.dumps(data))
    return path, json.loads(path.read_text())


def test_evaluation_measures_the_run(results):
    _, data = results
    for name in BODIES:
        assert data["rq1"][name]["dispatchers"] >= 1 and data["rq1"][name]["variants"] >= 1
        assert 0 < data["rq1"][name]["preserved_wasm"] <= 1
        assert set(data["rq2_rq3"][name]["calls_per_node"]) == {"0", "1"}
        assert all(n == 8 for n in data["rq2_rq3"][name]["calls_per_node"].values())
        assert 0 <= data["rq2_rq3"][name]["entropy"] <= 1
        assert data["overhead"][name]["ratio_median"] > 0
        assert set(data["rq4"][name]["p_values"]) == {"1", "2", "3"}


def test_mann_whitney_agrees_with_known_cases():
    edge = load_benchmark("edge")
    assert edge.mann_whitney([1, 2, 3, 4, 5] * 4, [1, 2, 3, 4, 5] * 4) > 0.9  # the same distribution
    assert edge.mann_whitney(list(range(20)), list(range(100, 120))) < 1e-6  # no overlap at all


def test_report_shows_the_run_numbers(results, tmp_path):
    path, data = results
    res = mewe("report", path, "-o", tmp_path / "report.html")
    assert res.returncode == 0, res.stderr
    page = (tmp_path / "report.html").read_text()
    for name in BODIES:
        row = re.search(rf"<tr><td>{name}</td>(.*?)</tr>", page.split('id="rq1"')[1], re.S).group(1)
        assert f"{data['rq1'][name]['dispatchers']} <span" in row and f"{data['rq1'][name]['variants']} <span" in row
        row = re.search(rf"<tr><td>{name}</td>(.*?)</tr>", page.split('id="overhead"')[1], re.S).group(1)
        assert f"{data['overhead'][name]['ratio_median']:.2f}×" in row
    assert page.count("<svg") == 5  # variants, preservation, unique traces, latency, path timing
    median = data["rq4"]["sort"]["median_us"]["2"]
    assert f"path 2: {median:,.0f} µs" in page  # the chart's numbers are the run's too
    bad = mewe("report", tmp_path / "report.html", "-o", tmp_path / "x.html")
    assert bad.returncode == 1 and bad.stderr.startswith("mewe: error: ") and "not JSON" in bad.stderr
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser:  # the page loads in a real browser
        dump = subprocess.run([browser, "--headless", "--no-sandbox", "--dump-dom", (tmp_path / "report.html").as_uri()],
                              capture_output=True, text=True, timeout=120)
        assert dump.returncode == 0 and 'id="rq4"' in dump.stdout


def test_results_the_reference_has_no_row_for_render(results, tmp_path):
    """Endpoints the reference did not measure (the QR ones) and a Cranelift figure that was not
    measured render as such, not as a traceback or a 0% bar."""
    _, data = results
    data = json.loads(json.dumps(data))
    data["reference"].pop("sort")
    data["rq1"]["base64"]["preserved_native"] = None
    data.update(mewe="0.1.0", machine="x86_64, 2 CPUs", date="2026-11-30")
    (tmp_path / "edge.json").write_text(json.dumps(data))
    res = mewe("report", tmp_path / "edge.json", "-o", tmp_path / "report.html")
    assert res.returncode == 0, res.stderr
    page = (tmp_path / "report.html").read_text()
    row = re.search(r"<tr><td>sort</td>(.*?)</tr>", page.split('id="rq1"')[1], re.S).group(1)
    assert '<span class="ref">(—)</span>' in row
    assert "not measured" in page and "n/a%" not in page
    chart = page[page.index("variants still distinct after codegen"):].split("</svg>")[0]
    assert chart.count(">Cranelift ") == 1  # sort's bar only: base64's was not measured
    assert "Measured with mewe 0.1.0 on x86_64, 2 CPUs, 2026-11-30" in page and 'name="viewport"' in page
    assert "Not in these results: encrypt, decrypt, random, invert, bin2base64, qr_str, qr_image" in page
