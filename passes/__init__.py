"""Passes: turn a function into semantically equivalent variants by cloning and mutating its IR.

    from mewe.passes import diversify, registry
    variants = diversify(module, variants=20, seed=1)   # {function: [Variant, ...]}

A pass is a `Pass` subclass registered with `@register` (or through the `mewe.passes`
entry-point group); it edits a `mewe.passes.ir.Function` in place. `describe()` lists them all.
"""

from . import blinding, blocks, bogus, junk, operands, pipeline, rare, schedule, stack, substitute, synthesize  # noqa: F401  (registers the built-in passes)
from .driver import diversify, verify_variants
from .framework import ENTRY_POINT_GROUP, Pass, describe, load_plugins, register, registry
from .ir import Function

__all__ = ["diversify", "registry", "Pass", "register", "describe", "load_plugins", "verify_variants",
           "Function", "ENTRY_POINT_GROUP"]
