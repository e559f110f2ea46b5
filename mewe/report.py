"""`mewe report`: one HTML page (jinja2) from the JSON `benchmarks/edge.py` writes, with each
figure beside the reference's and small inline SVG charts (no scripts, no network)."""

from __future__ import annotations

import json
import os
from html import escape
from pathlib import Path

from mewe.errors import MeweError
from mewe.fsutil import write_atomic

SECTIONS = ("rq1", "rq2_rq3", "overhead", "rq4", "reference", "settings")
ALL_ENDPOINTS = ("encrypt", "decrypt", "random", "invert", "bin2base64", "qr_str", "qr_image")  # benchmarks/edge.py's


def bars(title: str, groups: dict[str, dict[str, float]], unit: str = "") -> str:
    """A grouped horizontal bar chart as SVG: one group per endpoint, one bar per series."""
    series = sorted({s for g in groups.values() for s in g})
    colours = ["#4472c4", "#ed7d31", "#70ad47", "#a5a5a5", "#ffc000", "#5b9bd5"]
    top = max((v for g in groups.values() for v in g.values()), default=1.0) or 1.0
    row, width, left = 14, 420, 110
    height = 30 + len(groups) * (len(series) * row + 8)
    total = left + width + 170  # room for the longest label right of a full bar
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{total}" height="{height}" viewBox="0 0 {total} {height}" '
             f'role="img" aria-label="{escape(title)}">',
             f'<text x="0" y="14" font-weight="bold">{escape(title)}</text>']
    y = 26
    for name, values in groups.items():
        parts.append(f'<text x="0" y="{y + row}">{escape(name)}</text>')
        for i, s in enumerate(series):
            if s not in values:  # not measured for this group: no bar (a 0 would read as a result)
                y += row
                continue
            v = values[s]
            w = max(1.0, width * v / top)
            shown = f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"  # 1,309 µs, not 1.31e+03
            parts.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{row - 2}" fill="{colours[i % len(colours)]}">'
                         f'<title>{escape(s)}: {shown}{unit}</title></rect>')
            parts.append(f'<text x="{left + w + 4:.1f}" y="{y + row - 3}">{escape(s)} {shown}{unit}</text>')
            y += row
        y += 8
    parts.append("</svg>")
    return "".join(parts)


def render(data: dict) -> str:
    """The report page for evaluation results `data` (as benchmarks/edge.py writes them)."""
    import jinja2
    from markupsafe import Markup

    missing = [s for s in SECTIONS if s not in data]
    if missing:
        raise MeweError(f"not an evaluation result: no {', '.join(missing)} (write one with benchmarks/edge.py --json)")
    endpoints = list(data["rq1"])
    charts = {
        "variants": bars("variants per endpoint", {n: {"variants": data["rq1"][n]["variants"],
                                                       "reference": data["reference"].get(n, {}).get("variants", 0)}
                                                   for n in endpoints}),
        "unique": bars("unique traces / calls, per node", {n: {f"node {k}": v for k, v in
                                                              data["rq2_rq3"][n]["unique_per_node"].items()}
                                                          for n in endpoints}),
        "preservation": bars("variants still distinct after codegen", {
            n: {"wasm": 100 * data["rq1"][n]["preserved_wasm"],
                **({"Cranelift": 100 * data["rq1"][n]["preserved_native"]}
                   if data["rq1"][n]["preserved_native"] is not None else {})}  # not measured: no bar
            for n in endpoints}, "%"),
        "latency": bars("latency in process: median and p95", {
            n: {f"{kind} {q}": data["overhead"][n][f"{kind}_{q}_us"] for kind in ("plain", "multivariant")
                for q in ("median", "p95")} for n in endpoints}, " µs"),
        "paths": bars("median latency per pinned path", {
            n: {f"path {k}": v for k, v in data["rq4"][n]["median_us"].items()} for n in endpoints}, " µs"),
    }
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    template = env.get_template("report.html.j2")
    about = {"mewe": data.get("mewe", "(version not recorded)"), "machine": data.get("machine", "a machine not recorded"),
             "date": data.get("date", "date not recorded")}
    absent = [n for n in ALL_ENDPOINTS if n not in endpoints]
    return template.render(endpoints=endpoints, absent=absent, about=about, rq1=data["rq1"], rq23=data["rq2_rq3"], overhead=data["overhead"],
                           rq4=data["rq4"], reference=data["reference"], settings=data["settings"],
                           seconds=data.get("seconds", 0.0), charts={k: Markup(v) for k, v in charts.items()})


def write_report(results: str | os.PathLike, output: str | os.PathLike) -> Path:
    """Render the evaluation results at `results` (JSON) into the HTML file `output`."""
    path = Path(results)
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise MeweError(f"{path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise MeweError(f"{path}: not JSON: {exc}") from None
    write_atomic(output, render(data).encode())
    return Path(output)


__all__ = ["render", "write_report", "bars"]
