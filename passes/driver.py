"""`diversify`: every selected function of a module into verified, distinct variants.

Each variant starts from a copy of the function and runs a pipeline of passes with its own
`random.Random(f"{seed}:{function}:{k}")`, so output depends only on the inputs. Variants are
verified in one batch: each is added to the module under a fresh name, and the module is
parsed and verified once (bisecting only if something fails).
"""

from __future__ import annotations

import fnmatch
import random
import re
from typing import Sequence

from mewe.errors import MeweError
from mewe.llvmir import parse_module
from mewe.types import IRModule, Variant

from .framework import Pass, load_plugins, registry
from .ir import Function, function_spans, name_values

ATTEMPTS_PER_VARIANT = 3  # tries per requested variant before a function is deemed exhausted
_COMDAT_RE = re.compile(r" comdat(\(\$[^)]*\))?")


def selected(name: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    if name.startswith("__mewe_"):
        return False
    if include and not any(fnmatch.fnmatchcase(name, p) for p in include):
        return False
    return not any(fnmatch.fnmatchcase(name, p) for p in exclude)


def diversify(
    module: IRModule,
    *,
    variants: int,
    seed: int,
    passes: Sequence[str] | None = None,
    stack: int = 2,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
) -> dict[str, list[Variant]]:
    """Up to `variants` variants of every defined function of `module` (by original name).

    `passes` is a pipeline of pass names applied in order; None picks `stack` passes at random
    for each variant (from those that apply). Functions no pass changes get no entry.
    """
    load_plugins()
    names = list(passes) if passes is not None else sorted(registry)
    unknown = [n for n in names if n not in registry]
    if unknown:
        raise MeweError(f"unknown pass '{unknown[0]}' (`mewe passes` lists them)")
    instances = {n: registry[n]() for n in names}

    mod = parse_module(module.bitcode, verify=False)  # a fresh context: struct type names as in any other parse
    name_values(mod)
    text = str(mod)
    candidates: list[Variant] = []
    for spelled, (start, end) in function_spans(text).items():
        name = spelled.strip('"')
        if not selected(name, include, exclude):
            continue
        try:
            fn = Function.parse(text[start:end])
        except ValueError:
            continue  # a function the editable IR does not model keeps only its original body
        fn.context = text  # for passes that need the module around it (opt-pipeline)
        candidates += _variants(fn, name, instances, variants, seed, passes is None, stack)

    result: dict[str, list[Variant]] = {}
    for variant, ok in zip(candidates, verify_variants(text, candidates)):
        if ok:
            result.setdefault(variant.function, []).append(variant)
    return result


def _variants(fn: Function, name: str, instances: dict[str, Pass], count: int, seed: int,
              random_mode: bool, stack: int) -> list[Variant]:
    seen = {str(fn)}
    out: list[Variant] = []
    for k in range(count * ATTEMPTS_PER_VARIANT):
        if len(out) == count:
            break
        rng = random.Random(f"{seed}:{name}:{k}")
        clone = fn.copy()
        order = rng.sample(list(instances), len(instances)) if random_mode else list(instances)
        applied: list[str] = []
        for pass_name in order:
            if random_mode and len(applied) == stack:
                break
            if instances[pass_name].apply(clone, rng):
                applied.append(pass_name)
        ir = str(clone)
        if applied and ir not in seen:
            seen.add(ir)
            out.append(Variant(name, ir, tuple(applied)))
    return out


def verify_variants(module_text: str, variants: list[Variant]) -> list[bool]:
    """Whether each variant, in place of its function, gives a module that parses and verifies."""
    if not variants:
        return []
    copies = []
    for i, v in enumerate(variants):
        header, rest = v.ir.split("\n", 1)
        spelled = header[header.index("@") + 1 : header.index("(", header.index("@"))]
        header = _COMDAT_RE.sub("", header.replace(f"@{spelled}(", f"@__mewe_check_{i}(", 1))
        copies.append(f"{header}\n{rest}")
    try:
        parse_module(module_text + "\n" + "\n\n".join(copies) + "\n")
    except RuntimeError:
        if len(variants) == 1:
            return [False]
        half = len(variants) // 2
        return verify_variants(module_text, variants[:half]) + verify_variants(module_text, variants[half:])
    return [True] * len(variants)
