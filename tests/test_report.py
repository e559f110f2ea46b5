"""The evaluation (benchmarks/edge.py) on a real small run over two example services, and
`mewe report` rendering it: the page's numbers are the run's."""

from __future__ import annotations

import json
import re
import sys

import pytest

import browser
from conftest import EXAMPLES, ROOT, load_benchmark, mewe
from mewe.report import number

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


def _chart(page: str, title: str) -> str:
    """The SVG of the figure titled `title` on the page."""
    return page[page.rindex("<svg", 0, page.index(f'aria-label="{title}"')):].split("</svg>")[0]


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
    # Six figures (variants, preservation, unique traces, slowdown, latency CDFs, pinned paths),
    # drawn with axes and legends, text kept as text, with the run's numbers.
    assert page.count('class="figure"') == 6 and page.count("<svg") == 6
    ratio = data["overhead"]["sort"]["ratio_median"]
    assert f"> {number(ratio)}×</text>" in _chart(page, "Overhead: slowdown of the median")
    assert f"> {data['rq1']['sort']['variants']}</text>" in _chart(page, "RQ1: variants per endpoint")
    cdf = _chart(page, "Latency distributions, plain vs multivariant (in process, instantiation included)")
    assert f"sort: ×{number(ratio)} (ref. ×" in cdf and "plain build (same toolchain)" in cdf
    median = data["rq4"]["sort"]["median_us"]["2"]
    assert f"2: {number(median)}" in page.split('id="rq4"')[1]
    assert len(data["overhead"]["sort"]["samples_us"]["multivariant"]) == 6  # the distribution's samples
    assert "Multi-Variant Execution at the Edge" in page and "build seed 0" in page
    # Ids stay unique although several figures share the page.
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert len(ids) == len(set(ids))
    assert mewe("report", path, "-o", tmp_path / "again.html").returncode == 0  # same results, same page
    assert (tmp_path / "again.html").read_text() == page
    bad = mewe("report", tmp_path / "report.html", "-o", tmp_path / "x.html")
    assert bad.returncode == 1 and bad.stderr.startswith("mewe: error: ") and "not JSON" in bad.stderr


def test_report_in_a_real_browser(results, tmp_path):
    """The page in headless Chromium on a desktop and at a phone's 420 px: no console error, no
    sideways scrolling of the page, every figure drawn within the viewport, the run's numbers in
    the rendered tables. Screenshots go to build/report/ for a person to look at."""
    executable = browser.find()
    if executable is None:
        pytest.fail("needs Chromium: `make system-packages` installs Debian's chromium")
    path, data = results
    page = tmp_path / "report.html"
    assert mewe("report", path, "-o", page).returncode == 0
    chrome = browser.Browser(executable, tmp_path / "profile")
    try:
        for name, width, mobile in (("desktop", 1280, False), ("phone", 420, True)):
            chrome.open(page.as_uri(), width, mobile=mobile)
            assert chrome.evaluate("document.documentElement.scrollWidth") <= width
            widths = chrome.evaluate("[...document.querySelectorAll('svg.figure')]"
                                     ".map(e => e.getBoundingClientRect().width)")
            assert len(widths) == 6 and all(200 < w <= width for w in widths), widths
            cell = chrome.evaluate("[...document.querySelectorAll('#overhead tbody tr')]"
                                   ".find(r => r.cells[0].innerText == 'sort').cells[3].innerText")
            assert cell.startswith(f"{data['overhead']['sort']['ratio_median']:.2f}×")
            shot = chrome.screenshot(ROOT / "build" / "report" / f"report-{name}.png")
            assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000
        assert chrome.errors() == []
        # The check can fail: a page with a console error and an uncaught exception is caught.
        broken = tmp_path / "broken.html"
        broken.write_text("<!doctype html><script>console.error('boom'); throw new Error('bad')</script>")
        chrome.open(broken.as_uri(), 800)
        chrome.evaluate("1")
        assert "boom" in chrome.errors()
    finally:
        chrome.close()


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
    chart = _chart(page, "RQ1: variants preserved by code generation")
    assert chart.count("— not measured") == 1  # base64's Cranelift figure: no bar, said so
    assert len(re.findall(r"> [\d.,]+%</text>", chart)) == 3  # the three bars that were measured
    assert "mewe 0.1.0 · x86_64, 2 CPUs · 2026-11-30 · build seed 0" in page and 'name="viewport"' in page
    assert "Not in these results: encrypt, decrypt, random, invert, bin2base64, qr_str, qr_image" in page


def test_a_run_with_missing_figures_renders(results, tmp_path, monkeypatch):
    """An endpoint measured in one section only, results without latency samples (an older
    edge.py), and no matplotlib: the page says what is missing and why, never a traceback or a
    fake 0."""
    from mewe.report import render

    _, data = results
    data = json.loads(json.dumps(data))
    for section in ("rq2_rq3", "overhead", "rq4"):
        data[section].pop("base64")
    for row in (*data["overhead"].values(), *data["rq4"].values()):
        row.pop("samples_us")
    data["jco"] = {"sort": {"plain_median_us": 1000.0, "multivariant_median_us": 1250.0, "ratio_median": 1.25,
                            "unique": 0.97, "entropy": 0.99}}
    page = render(data)
    row = re.search(r"<tr><td>sort</td>(.*?)</tr>", page.split('id="overhead"')[1], re.S).group(1)
    assert row.rstrip().endswith('<td class="">1.25×</td>')  # the jco serve column, where measured
    row = re.search(r"<tr><td>sort</td>(.*?)</tr>", page.split('id="rq23"')[1], re.S).group(1)
    assert re.sub(r"\s+", "", row).endswith("<td>0.97</td><td>0.99</td>")  # unique traces under jco serve
    del data["jco"]["sort"]["unique"], data["jco"]["sort"]["entropy"]  # results from before jco traces
    row = re.search(r"<tr><td>sort</td>(.*?)</tr>", render(data).split('id="rq23"')[1], re.S).group(1)
    assert row.count('<span class="none">—</span>') == 2
    for section in ("rq23", "overhead", "rq4"):
        row = re.search(r"<tr><td>base64</td>(.*?)</tr>", page.split(f'id="{section}"')[1], re.S).group(1)
        assert "— " in row and "not measured in this run" in row
    assert "these results carry no latency samples" in page and "carry no per-path samples" in page
    assert page.count('class="figure"') == 4
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if the extra were not installed
    page = render(data)
    assert "<svg" not in page
    assert page.count("matplotlib is not installed (pip install &#39;mewe[report]&#39;)") == 6
