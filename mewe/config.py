"""Project settings for multivariant builds: `mewe.toml`, or `[tool.mewe]` in pyproject.toml.

The nearest such file from the working directory upwards is used; command-line flags win.

    # mewe.toml                      # pyproject.toml
    variants = 8                     [tool.mewe]
    passes = ["substitute"]          variants = 8
    exclude = ["main"]
"""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any

from mewe.errors import MeweError
from mewe.types import MultivariantOptions, Policy, Rerandomize

# Settings keys (TOML spelling) -> MultivariantOptions fields.
KEYS = {"variants": "variants", "seed": "seed", "passes": "passes", "stack": "stack", "include": "include",
        "exclude": "exclude", "policy": "policy", "dispatch": "dispatch", "tail-calls": "tail_calls",
        "trace": "trace", "reseed": "reseed", "rerandomize": "rerandomize", "jobs": "jobs", "executor": "executor",
        "cache": "cache", "max-size": "max_size", "max-cost": "max_cost", "fallback": "fallback",
        "merge-bodies": "merge_bodies", "self-calls": "self_calls"}


def find_settings(start: Path | None = None) -> tuple[Path | None, dict[str, Any]]:
    """The nearest mewe.toml or pyproject.toml with [tool.mewe], and its settings table."""
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        for name, table in (("mewe.toml", ()), ("pyproject.toml", ("tool", "mewe"))):
            path = directory / name
            if not path.is_file():
                continue
            try:
                data = tomllib.loads(path.read_text())
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                raise MeweError(f"{path}: invalid TOML: {exc}") from None
            for key in table:
                data = data.get(key, {}) if isinstance(data, dict) else {}
            if data:
                return path, data
    return None, {}


def apply_settings(options: MultivariantOptions, settings: dict[str, Any], origin: Path | str) -> MultivariantOptions:
    """`options` with the file's settings applied; unknown keys and bad values are errors."""
    changes: dict[str, Any] = {}
    for key, value in settings.items():
        if key not in KEYS:
            raise MeweError(f"{origin}: unknown setting '{key}' (known: {', '.join(sorted(KEYS))})")
        field = KEYS[key]
        if field == "policy":
            value = Policy.parse(str(value))
        elif field == "rerandomize":
            value = Rerandomize.parse(str(value))
        elif field == "fallback":
            if not isinstance(value, str):
                raise MeweError(f"{origin}: '{key}' must be a pass name or 'none'")
            value = None if value == "none" else value
        elif field == "executor":
            if not isinstance(value, str):
                raise MeweError(f"{origin}: '{key}' must be a string")
        elif field in ("passes", "include", "exclude"):
            if isinstance(value, str):  # a pass may carry parameters: junk-code(sites=1,...)
                from mewe.passes.framework import split_pipeline

                value = split_pipeline(value) if field == "passes" else [v.strip() for v in value.split(",") if v.strip()]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise MeweError(f"{origin}: '{key}' must be a list of names")
            value = tuple(value)
        else:
            expected = type(getattr(MultivariantOptions(), field))
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
                kind = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(expected, expected.__name__)
                raise MeweError(f"{origin}: '{key}' must be {kind}")
        changes[field] = value
    return dataclasses.replace(options, **changes)
