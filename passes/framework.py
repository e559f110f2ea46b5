"""The pass registry: built-in passes register with `@register`; other packages through the
`mewe.passes` entry-point group (`name = "package.module:PassClass"`), with no edit to mewe,
and add rewrite rules to `substitute` through the `mewe.rules` group (see `rules.py`).
"""

from __future__ import annotations

import random
import re
from typing import ClassVar

from mewe.errors import MeweError

from .ir import Function
from .rules import installed_entry_points, load_rule_plugins, plugin_rules_digest  # noqa: F401  (plugin_rules_digest: for the driver)

ENTRY_POINT_GROUP = "mewe.passes"


class Pass:
    """A transformation of one function into a semantically equivalent one.

    Subclasses set `name` and a one-line `description`, and implement `apply`, which mutates
    `fn` in place using only `rng` for its choices and returns whether it changed anything.
    A pass that reads `fn.context` (the module's text) sets `uses_context`; it may depend on
    the module's globals, declarations and attributes, not on other functions' bodies (cached
    variants are keyed by those, so editing one function regenerates only its variants).
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    uses_context: ClassVar[bool] = False
    # Knobs a pipeline may set (`--passes 'junk-code(sites=1)'`): name -> one-line meaning. Each
    # is also a class attribute holding its default (an int, float or bool).
    parameters: ClassVar[dict[str, str]] = {}

    def __init__(self, **settings: str | int | float | bool):
        for key, value in settings.items():
            if key not in self.parameters:
                known = ", ".join(self.parameters) or "none"
                raise MeweError(f"pass '{self.name}' has no parameter '{key}' (its parameters: {known})")
            setattr(self, key, _converted(self.name, key, value, getattr(type(self), key)))

    def apply(self, fn: Function, rng: random.Random) -> bool:
        raise NotImplementedError


def _converted(name: str, key: str, value, default):
    """`value` (text from a pipeline, or a number) as the type of the parameter's default."""
    kind = type(default)
    try:
        if kind is bool:
            if str(value).lower() not in ("1", "0", "true", "false"):
                raise ValueError
            return str(value).lower() in ("1", "true")
        out = kind(value)
    except ValueError:
        raise MeweError(f"pass '{name}': parameter '{key}' must be {'an integer' if kind is int else 'a number' if kind is float else kind.__name__}, "
                        f"not '{value}'") from None
    if out < 0:
        raise MeweError(f"pass '{name}': parameter '{key}' must not be negative")
    return out


_SPEC = re.compile(r"\s*([-\w.]+)\s*(?:\((.*)\))?\s*")


def parse_spec(spec: str) -> tuple[str, dict[str, str]]:
    """`junk-code(sites=1, widths=32)` -> ("junk-code", {"sites": "1", "widths": "32"})."""
    m = _SPEC.fullmatch(spec)
    if not m:
        raise MeweError(f"bad pass '{spec}' (use NAME or NAME(key=value,...))")
    params = {}
    for item in filter(None, (i.strip() for i in (m[2] or "").split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key.strip() or not value.strip():
            raise MeweError(f"bad parameter '{item}' in pass '{spec}' (use key=value)")
        params[key.strip()] = value.strip()
    return m[1], params


def split_pipeline(text: str) -> list[str]:
    """A textual pipeline split into pass specs at commas outside parentheses."""
    out, depth, cur = [], 0, []
    for ch in text:
        depth += (ch == "(") - (ch == ")")
        if ch == "," and depth == 0:
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur).strip())
    return [s for s in out if s]


def instantiate(spec: str) -> Pass:
    """The pass a spec names, with its parameters set (plugins loaded first)."""
    load_plugins()
    name, params = parse_spec(spec)
    if name not in registry:
        raise MeweError(f"unknown pass '{name}' (`mewe passes` lists them)")
    return registry[name](**params)


registry: dict[str, type[Pass]] = {}  # name -> Pass class, in registration order
_plugins: dict[str, str] = {}  # pass name -> the entry point that provided it


def register(cls: type[Pass]) -> type[Pass]:
    """Class decorator: add a built-in pass to the registry."""
    if not cls.name or not cls.description:
        raise TypeError(f"{cls.__name__} needs a name and a description")
    if cls.name in registry and registry[cls.name] is not cls:
        raise TypeError(f"pass '{cls.name}' is registered twice")
    registry[cls.name] = cls
    return cls


def load_plugins() -> None:
    """Register the passes of installed packages' `mewe.passes` entry points and load and prove
    the rules of their `mewe.rules` entry points (idempotent)."""
    for ep in installed_entry_points(ENTRY_POINT_GROUP):
        origin = f"{ep.name} = {ep.value}"
        if _plugins.get(ep.name) == origin:
            continue
        try:
            cls = ep.load()
        except Exception as exc:  # a broken plugin is the plugin's error, reported as such
            raise MeweError(f"pass plugin '{origin}' failed to load: {exc}") from None
        if not (isinstance(cls, type) and issubclass(cls, Pass)) or not cls.name or not cls.description:
            raise MeweError(f"pass plugin '{origin}' is not a mewe.passes.Pass subclass with a name and a description")
        if cls.name in registry and registry[cls.name] is not cls:
            raise MeweError(f"pass plugin '{origin}' uses the name '{cls.name}', which is already taken")
        registry[cls.name] = cls
        _plugins[ep.name] = origin
    load_rule_plugins()  # here, so that worker processes (which call this) apply them too


def describe() -> list[tuple[str, str]]:
    """(name, description) of every pass, plugins included: what `mewe passes` prints. The
    description ends with the pass's parameters and their defaults, if it has any."""
    load_plugins()
    return [(name, cls.description + "".join(f"; {k}={getattr(cls, k)}: {v}" for k, v in cls.parameters.items()))
            for name, cls in registry.items()]
