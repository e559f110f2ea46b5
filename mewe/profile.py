"""Profiles for cost-aware builds: which functions are hot, from a dispatch trace.

A profile is what `mewe run --trace FILE` writes for a traced build: one JSON object per
dispatch, `{"function": NAME, "variant": K}`. A function is hot when it took at least
`share` of the dispatches; `--max-cost` then bounds only hot functions, and cold ones
(rarely or never called in the profiled runs) keep any variant.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

from mewe.errors import MeweError

HOT_SHARE = 0.001  # of all dispatches in the profile


def call_counts(path: str | os.PathLike) -> Counter:
    """Dispatches per function in a trace file."""
    counts: Counter = Counter()
    p = Path(path)
    try:
        with open(p, encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    counts[json.loads(line)["function"]] += 1
                except (ValueError, KeyError, TypeError):
                    raise MeweError(f"{p}:{number}: not a dispatch trace line (write one with 'mewe run --trace')") from None
    except OSError as exc:
        raise MeweError(f"{p}: {exc.strerror.lower() if exc.strerror else exc}") from None
    return counts


def hot_functions(path: str | os.PathLike, share: float = HOT_SHARE) -> frozenset[str]:
    """The functions that took at least `share` of the dispatches in the trace at `path`."""
    counts = call_counts(path)
    total = sum(counts.values())
    return frozenset(name for name, n in counts.items() if n >= share * total)
