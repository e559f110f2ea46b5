"""`mewe report`: one HTML page from the JSON `benchmarks/edge.py` writes, each figure beside the
reference's, with figures drawn by matplotlib as inline SVG (no scripts, no network). Without
matplotlib (`pip install 'mewe[report]'`) the page has its tables and says why the figures are
missing."""

from __future__ import annotations

import io
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

from mewe.errors import MeweError
from mewe.fsutil import write_atomic

SECTIONS = ("rq1", "rq2_rq3", "overhead", "rq4", "reference", "settings")
ALL_ENDPOINTS = ("encrypt", "decrypt", "random", "invert", "bin2base64", "qr_str", "qr_image")  # benchmarks/edge.py's
CITATION = ("J. Cabrera-Arteaga, P. Laperdrix, M. Monperrus, B. Baudry. Multi-Variant Execution at the Edge. "
            "ACM Workshop on Moving Target Defense (MTD), 2022. arXiv:2108.08125")
LATENCY_TARGET = 1.25  # mewe's bound on the multivariant/plain latency ratio, marked in tables and figures
REFERENCE_UNIQUE = 0.38  # the reference's lowest unique-trace ratio per node
REFERENCE_PRESERVED = 96.0  # % of the reference's variants still distinct after Lucet's compilation


@dataclass(frozen=True)
class Series:
    """One thing measured, drawn in one colour everywhere on the page (Okabe-Ito colours, which
    colour-blind readers tell apart)."""

    label: str
    colour: str


MULTIVARIANT = Series("mewe multivariant, in process", "#0072B2")
HTTP = Series("mewe multivariant, via mewe serve", "#CC79A7")
CRANELIFT = Series("mewe, after Cranelift", "#56B4E9")
PLAIN = Series("plain build (same toolchain)", "#7F7F7F")
REFERENCE = Series("reference (MEWE, 2022)", "#E69F00")
TARGET = Series("threshold", "#D55E00")
LEGEND = (MULTIVARIANT, CRANELIFT, HTTP, PLAIN, REFERENCE, TARGET)


def number(value: float) -> str:
    """A figure as a reader wants it: 1,309 not 1.31e+03; 0.52 not 0.5234."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


class Figures:
    """The page's figures, as inline SVG strings, from matplotlib's object API (no pyplot: no
    global state, no display)."""

    def __init__(self) -> None:
        import matplotlib

        matplotlib.rcParams.update({
            "svg.fonttype": "none",  # text stays text: selectable, searchable, scales with the page
            "svg.hashsalt": "mewe-report",  # stable ids: the same results give the same page
            "font.size": 10, "font.family": "sans-serif", "axes.titlesize": 10,
            "axes.spines.top": False, "axes.spines.right": False,
            "axes.grid": True, "grid.color": "#dddddd", "grid.linewidth": 0.6, "axes.axisbelow": True,
        })
        from matplotlib.figure import Figure

        self._figure = Figure
        self._count = 0

    def new(self, rows: int = 1, cols: int = 1, height: float = 0.0, width: float = 6.4):
        figure = self._figure(figsize=(width, height or 2.4 * rows), layout="constrained")
        return figure, figure.subplots(rows, cols, squeeze=False)

    def small_multiples(self, count: int, extra_height: float):
        """A grid of `count` plots, two to a row (unused cells hidden): figure, plots, columns."""
        cols = 2 if count > 1 else 1
        rows = math.ceil(count / cols)
        figure, axes = self.new(rows, cols, height=extra_height + 2.0 * rows)
        cells = [axes[k // cols][k % cols] for k in range(rows * cols)]
        for ax in cells[count:]:
            ax.set_visible(False)
        return figure, cells[:count], cols

    def svg(self, figure, title: str) -> str:
        """`figure` as an SVG element for the page: ids made unique on the page (several
        figures share it), the size a maximum rather than fixed, so it shrinks on a phone."""
        self._count += 1
        prefix = f"fig{self._count}-"
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg", metadata={"Date": None})
        text = buffer.getvalue()
        text = text[text.index("<svg"):]
        text = re.sub(r'\bid="([^"]+)"', rf'id="{prefix}\1"', text)
        text = re.sub(r"url\(#([^)]+)\)", rf"url(#{prefix}\1)", text)
        text = re.sub(r'href="#([^"]+)"', rf'href="#{prefix}\1"', text)
        text = re.sub(r'<svg([^>]*?) width="([\d.]+)pt" height="[\d.]+pt"',
                      rf'<svg\1 class="figure" style="max-width:\2pt" role="img" aria-label="{_attr(title)}"',
                      text, count=1)
        return text

    def legend(self, figure, entries: list[tuple[str, str, str]]) -> None:
        """A legend below the figure: (colour, label, "bar" | "line" | "dot") per entry."""
        from matplotlib.lines import Line2D
        from matplotlib.patches import Patch

        handles = [Patch(color=c, label=t) if kind == "bar" else
                   Line2D([], [], color=c, linestyle="--", label=t) if kind == "line" else
                   Line2D([], [], color=c, marker="o", linestyle="none", label=t) for c, t, kind in entries]
        figure.legend(handles=handles, loc="outside lower center", ncols=2, frameon=False, fontsize=9)

    def grouped_bars(self, endpoints: list[str], series: list[tuple[Series, dict, str]], xlabel: str, title: str,
                     log: bool = False, limit: float | None = None, lines: tuple = (), unit: str = "") -> str:
        """Horizontal bars, one group per endpoint and one bar per series; a value that was not
        measured shows as '—' with no bar (a bar of 0 would read as a result)."""
        figure, axes = self.new(height=1.2 + 0.22 * len(endpoints) * (len(series) + 0.6))
        ax = axes[0][0]
        step = len(series) + 0.6
        height = 0.8
        measured = [v for _, values, _ in series for v in values.values() if v is not None]
        top = limit or (max(measured, default=1.0) or 1.0)
        for i, (s, values, _) in enumerate(series):
            for j, name in enumerate(endpoints):
                y = j * step + i
                value = values.get(name)
                if value is None:
                    ax.text(0.01, y, "— not measured", transform=ax.get_yaxis_transform(), va="center",
                            fontsize=8, color="#555555")
                    continue
                ax.barh(y, value, height=height, color=s.colour)
                ax.text(value, y, f" {number(value)}{unit}", va="center", fontsize=8)
        for x, s, label in lines:
            ax.axvline(x, color=s.colour, linestyle="--", linewidth=1.2)
        ax.set_yticks([j * step + (len(series) - 1) / 2 for j in range(len(endpoints))], endpoints)
        ax.invert_yaxis()
        ax.grid(axis="y", visible=False)
        ax.set_xlabel(xlabel)
        if log:
            ax.set_xscale("log")
            ax.set_xlim(right=top * 6)
        else:
            ax.set_xlim(0, top * 1.18)
        self.legend(figure, [(s.colour, label or s.label, "bar") for s, _, label in series] +
                    [(s.colour, label, "line") for _, s, label in lines])
        ax.set_title(title, loc="left")
        return self.svg(figure, title)

    def unique_per_node(self, endpoints: list[str], rq23: dict) -> str:
        title = "RQ2/RQ3: unique traces among a node's calls (same request)"
        figure, axes = self.new(height=1.3 + 0.36 * len(endpoints))
        ax = axes[0][0]
        for j, name in enumerate(endpoints):
            row = rq23.get(name)
            if not row:
                ax.text(0.01, j, "— not measured", transform=ax.get_yaxis_transform(), va="center", fontsize=8)
                continue
            values = list(row["unique_per_node"].values())
            ax.scatter(values, [j] * len(values), s=28, color=MULTIVARIANT.colour, alpha=0.8, zorder=3)
            ax.text(1.03, j, f"{number(min(values))} lowest", va="center", fontsize=8)
        ax.axvline(REFERENCE_UNIQUE, color=REFERENCE.colour, linestyle="--", linewidth=1.2)
        ax.set_yticks(range(len(endpoints)), endpoints)
        ax.invert_yaxis()
        ax.set_ylim(len(endpoints) - 0.5, -0.5)
        ax.set_xlim(0, 1.25)
        ax.set_xticks([0, 0.25, 0.5, 0.75, 1.0])
        ax.set_xlabel("unique traces / calls, per node (1.00: every call took a new path)")
        self.legend(figure, [(MULTIVARIANT.colour, "mewe: one dot per node", "dot"),
                             (REFERENCE.colour, f"reference: lowest per node, {REFERENCE_UNIQUE}", "line")])
        ax.set_title(title, loc="left")
        return self.svg(figure, title)

    def latency_cdfs(self, endpoints: list[str], overhead: dict, reference: dict) -> str:
        """Small multiples, one per endpoint: the latency distribution (empirical CDF) of the plain
        and the multivariant service, in process; the reference's slowdown in each title."""
        title = "Latency distributions, plain vs multivariant (in process, instantiation included)"
        figure, cells, cols = self.small_multiples(len(endpoints), 0.8)
        for k, (name, ax) in enumerate(zip(endpoints, cells)):
            samples = overhead[name]["samples_us"]
            for s, key in ((PLAIN, "plain"), (MULTIVARIANT, "multivariant")):
                values = sorted(samples[key])
                ax.step(values, [(i + 1) / len(values) for i in range(len(values))], where="post",
                        color=s.colour, linewidth=1.6, label=s.label)
            ax.set_xscale("log")
            ax.xaxis.set_minor_locator(_log_minor())
            ax.xaxis.set_major_formatter(_plain_ticks())
            ax.xaxis.set_minor_formatter(_plain_ticks())
            ax.set_ylim(0, 1.02)
            slowdown = reference.get(name, {}).get("slowdown")
            ax.set_title(f"{name}: ×{number(overhead[name]['ratio_median'])}"
                         f" (ref. ×{number(slowdown) if slowdown else '—'})", loc="left")
            ax.set_xlabel("latency (µs, log scale)")
            if k % cols == 0:
                ax.set_ylabel("fraction of requests")
        self.legend(figure, [(PLAIN.colour, PLAIN.label, "bar"), (MULTIVARIANT.colour, "mewe multivariant", "bar")])
        figure.suptitle(title, x=0.0, ha="left", fontsize=10)
        return self.svg(figure, title)

    def pinned_paths(self, endpoints: list[str], rq4: dict) -> str:
        """RQ4: one box per pinned path (its latency samples), per endpoint."""
        title = "RQ4: latency under each pinned path (box: quartiles; whiskers: 1.5 IQR)"
        figure, cells, cols = self.small_multiples(len(endpoints), 0.6)
        for k, (name, ax) in enumerate(zip(endpoints, cells)):
            row = rq4[name]
            paths = list(row["samples_us"])
            box = ax.boxplot([row["samples_us"][p] for p in paths], tick_labels=paths, patch_artist=True,
                             widths=0.6, showfliers=False, medianprops={"color": "black"})
            for patch in box["boxes"]:
                patch.set(facecolor=MULTIVARIANT.colour, alpha=0.55, edgecolor=MULTIVARIANT.colour)
            told = ", ".join(map(str, row["distinguishable"])) or "none"
            ax.set_title(f"{name}: told apart from path 0: {told}", loc="left")
            ax.set_xlabel("pinned path K")
            if k % cols == 0:
                ax.set_ylabel("latency (µs)")
        figure.suptitle(title, x=0.0, ha="left", fontsize=10)
        return self.svg(figure, title)


def _plain_ticks():
    """Tick labels as numbers (600, 1,000), not powers of ten, on a log axis spanning little."""
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda v, _: number(v) if v > 0 else "")


def _log_minor():
    """Minor ticks at 2 and 5 times a power of ten: labelled, they do not collide."""
    from matplotlib.ticker import LogLocator

    return LogLocator(base=10, subs=(2.0, 5.0))


def _attr(text: str) -> str:
    from html import escape

    return escape(text, quote=True)


def figures(data: dict, endpoints: list[str]) -> dict[str, str]:
    """Every figure of the page, keyed by name: SVG, or a sentence saying why it is missing."""
    try:
        draw = Figures()
    except ImportError:
        why = "— no figure: matplotlib is not installed (pip install 'mewe[report]')."
        return {k: why for k in ("variants", "preservation", "unique", "overhead", "latency", "paths")}
    rq1, rq23, over, rq4, ref = (data[k] for k in ("rq1", "rq2_rq3", "overhead", "rq4", "reference"))
    out = {
        "variants": draw.grouped_bars(
            endpoints, [(MULTIVARIANT, {n: rq1[n]["variants"] if n in rq1 else None for n in endpoints}, "mewe"),
                        (REFERENCE, {n: ref.get(n, {}).get("variants") for n in endpoints}, "")],
            "variants (bodies beyond the original; log scale)", "RQ1: variants per endpoint", log=True),
        "preservation": draw.grouped_bars(
            endpoints, [(MULTIVARIANT, {n: 100 * rq1[n]["preserved_wasm"] if n in rq1 else None for n in endpoints},
                         "mewe, in the wasm"),
                        (CRANELIFT, {n: 100 * rq1[n]["preserved_native"] if rq1.get(n, {}).get("preserved_native")
                                     is not None else None for n in endpoints}, "")],
            "variants still distinct from every other body (%)", "RQ1: variants preserved by code generation",
            limit=100, unit="%", lines=((REFERENCE_PRESERVED, REFERENCE, f"reference: ~{REFERENCE_PRESERVED:.0f}% after Lucet"),)),
        "unique": draw.unique_per_node(endpoints, rq23),
        "overhead": draw.grouped_bars(
            endpoints, [(MULTIVARIANT, {n: over[n]["ratio_median"] if n in over else None for n in endpoints}, ""),
                        (HTTP, {n: over[n]["ratio_http_median"] if n in over else None for n in endpoints}, ""),
                        (REFERENCE, {n: ref.get(n, {}).get("slowdown") for n in endpoints}, "")],
            "median latency, multivariant / plain (log scale; 1 = no cost)", "Overhead: slowdown of the median",
            log=True, unit="×", lines=((LATENCY_TARGET, TARGET, f"mewe's target: at most {LATENCY_TARGET}×"),)),
    }
    sampled = [n for n in endpoints if "samples_us" in over.get(n, {})]
    out["latency"] = (draw.latency_cdfs(sampled, over, ref) if sampled else
                      "— no figure: these results carry no latency samples (written by an edge.py before they were "
                      "recorded); the table has the medians.")
    timed = [n for n in endpoints if "samples_us" in rq4.get(n, {})]
    out["paths"] = (draw.pinned_paths(timed, rq4) if timed else
                    "— no figure: these results carry no per-path samples; the table has the medians.")
    return out


def render(data: dict) -> str:
    """The report page for evaluation results `data` (as benchmarks/edge.py writes them)."""
    import jinja2
    from markupsafe import Markup

    missing = [s for s in SECTIONS if s not in data]
    if missing:
        raise MeweError(f"not an evaluation result: no {', '.join(missing)} (write one with benchmarks/edge.py --json)")
    endpoints = list(dict.fromkeys([*data["rq1"], *data["rq2_rq3"], *data["overhead"], *data["rq4"]]))
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    env.filters["num"] = number
    template = env.get_template("report.html.j2")
    seeds = sorted({row["seed"] for row in data["rq1"].values() if "seed" in row})
    about = {"mewe": data.get("mewe", "(version not recorded)"), "machine": data.get("machine", "a machine not recorded"),
             "date": data.get("date", "date not recorded"),
             "seed": ", ".join(map(str, seeds)) if seeds else "not recorded"}
    absent = [n for n in ALL_ENDPOINTS if n not in endpoints]
    return template.render(endpoints=endpoints, absent=absent, about=about, rq1=data["rq1"], rq23=data["rq2_rq3"],
                           overhead=data["overhead"], rq4=data["rq4"], reference=data["reference"], jco=data.get("jco", {}),
                           settings=data["settings"], seconds=data.get("seconds"), citation=CITATION,
                           legend=LEGEND, target=LATENCY_TARGET, reference_unique=REFERENCE_UNIQUE,
                           reference_preserved=REFERENCE_PRESERVED,
                           charts={k: Markup(v) if v.startswith("<svg") else v for k, v in figures(data, endpoints).items()})


def write_report(results: str | os.PathLike, output: str | os.PathLike) -> Path:
    """Render the evaluation results at `results` (JSON) into the HTML file `output`."""
    path = Path(results)
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise MeweError(f"{path}: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise MeweError(f"{path}: not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise MeweError(f"{path}: not an evaluation result (a JSON object from benchmarks/edge.py --json)")
    write_atomic(output, render(data).encode())
    return Path(output)


__all__ = ["render", "write_report", "number", "CITATION"]
