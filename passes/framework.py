"""The pass registry: built-in passes register with `@register`; other packages through the
`mewe.passes` entry-point group (`name = "package.module:PassClass"`), with no edit to mewe,
and add rewrite rules to `substitute` through the `mewe.rules` group (see `rules.py`).
"""

from __future__ import annotations

import random
from importlib.metadata import entry_points
from typing import ClassVar

from mewe.errors import MeweError

from .ir import Function
from .rules import load_rule_plugins, plugin_rules_digest  # noqa: F401  (plugin_rules_digest: for the driver)

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

    def apply(self, fn: Function, rng: random.Random) -> bool:
        raise NotImplementedError


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
    for ep in entry_points(group=ENTRY_POINT_GROUP):
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
    """(name, description) of every pass, plugins included: what `mewe passes` prints."""
    load_plugins()
    return [(name, cls.description) for name, cls in registry.items()]
