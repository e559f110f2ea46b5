"""`diversify`: every selected function of a module into verified, distinct variants.

Each variant starts from a copy of the function and runs a pipeline of passes with its own
`random.Random(f"{seed}:{function}:{k}")`, so output depends only on the inputs. That makes
functions independent tasks: they run on an executor (local processes by default, or a Dask
cluster; see `mewe.executors`) and their variants are cached on disk by everything they
depend on (`mewe.passes.cache`); results are merged in the module's order, so the output is
the same whatever ran them. Variants are verified here, in one batch: each is added to the
module under a fresh name, and the module is parsed and verified once (bisecting only if
something fails).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import os
import random
import re
import threading
from dataclasses import dataclass
from typing import Callable, Sequence

from mewe import executors
from mewe.errors import MeweError, raise_if_interrupted
from mewe.llvmir import definitions, instruction_count, llvm_error, parse_module, quote_name
from mewe.types import FALLBACK, IRModule, Variant

from . import cache as disk
from .analysis import body_cost
from .framework import Pass, _plugins, instantiate, load_plugins, parse_spec, plugin_rules_digest, registry
from .ir import Function, name_values

ATTEMPTS_PER_VARIANT = 3  # tries per requested variant before a function is deemed exhausted
# A body that costs no more than this (mewe.llvmir.cfg_cost: a few instructions) is tiny: a stack
# of passes doubles its cost, so the surplus half of its candidates gets the fallback alone, the
# cheapest change codegen keeps; the cost bound then has cheap candidates to keep.
TINY_BODY = 8
_COMDAT_RE = re.compile(r" comdat(\(\$[^)]*\))?")
_SOURCE_RE = re.compile(r"^(; ModuleID = |source_filename = ).*$", re.M)
_LOCK = threading.Lock()  # a Dask worker may run tasks in threads; LLVM and z3 get one at a time


def selected(name: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    if name.startswith("__mewe_"):
        return False
    if include and not any(fnmatch.fnmatchcase(name, p) for p in include):
        return False
    return not any(fnmatch.fnmatchcase(name, p) for p in exclude)


@dataclass(frozen=True)
class _Settings:
    """What every function's task shares (it travels to the workers once per batch)."""

    passes: tuple[str, ...]
    random_mode: bool
    stack: int
    seed: int
    count: int
    context: str  # the named module text, for passes that read fn.context
    cache: bool
    verify_each: bool = False
    fallback: str | None = None  # the pass the surplus half of random stacks also gets


def diversify(
    module: IRModule,
    *,
    variants: int,
    seed: int,
    passes: Sequence[str] | None = None,
    stack: int = 2,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    jobs: int | None = None,
    executor: str | None = None,
    cache: bool = True,
    max_size: int | None = None,
    invalid: bool = False,
    skip: frozenset[str] = frozenset(),
    verify_each: bool = False,
    fallback: str | None = FALLBACK,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, list[Variant]]:
    """Up to `variants` variants of every defined function of `module` (by original name).

    `passes` is a pipeline of pass specs applied in order (`substitute`, or with parameters
    `junk-code(sites=1)`); None picks `stack` passes at random for each variant (from those
    that apply), and the surplus half of them also gets the `fallback` pass (None: none).
    Functions no pass changes get no entry.
    `executor` and `jobs` say where functions are diversified (`mewe.executors`); with
    `cache`, functions diversified before with the same settings are not diversified again.
    Functions of more than `max_size` instructions get no variants. With `invalid`, variants
    that do not verify are returned too, with `error` saying why (the linker reports them).
    Functions named in `skip` get none (the linker would not dispatch them). With
    `verify_each`, each variant is verified after every pass, so an invalid one names the pass
    that broke it; that bypasses the cache. `progress(stage, done, total)` hears how many
    functions are diversified (those found in the cache count as done).
    """
    load_plugins()
    names = tuple(passes) if passes is not None else tuple(sorted(registry))
    fallback = fallback if passes is None else None
    used = names + ((fallback,) if fallback else ())
    for spec in used:  # unknown passes and bad parameters are errors here, not in a worker
        instantiate(spec)
    kinds = {spec: registry[parse_spec(spec)[0]] for spec in used}
    local_only = [n for n in used if not kinds[n].__module__.startswith(__package__ + ".") and parse_spec(n)[0] not in _plugins]
    if local_only:  # registered at run time: other processes do not have it
        if executor not in (None, executors.SERIAL):
            raise MeweError(f"pass '{local_only[0]}' is not built in or a plugin, so it cannot run on executor '{executor}'")
        executor = executors.SERIAL
    executors.parse(executor)  # a bad executor is an error even when every function is cached

    mod = parse_module(module.bitcode, verify=False)  # a fresh context: struct type names as in any other parse
    name_values(mod)
    text = str(mod)
    spans = definitions(mod, text)
    cache = cache and not verify_each
    functions = [(n, text[start:end]) for n, start, end in spans if n not in skip and selected(n, include, exclude)
                 and (max_size is None or instruction_count(text[start:end].splitlines()) <= max_size)]
    settings = _Settings(names, passes is None, stack, seed, variants, text, cache, verify_each, fallback)
    context = disk.digest(_skeleton(text, spans)) if any(kinds[n].uses_context for n in used) else ""
    code = _code(settings)
    keys = [_key(settings, name, body, context, code) for name, body in functions]

    made: list[list[Variant] | None] = [_load(key, name) if cache else None for key, (name, _) in zip(keys, functions)]
    todo = [i for i, vs in enumerate(made) if vs is None]
    cached = len(functions) - len(todo)
    tick = (lambda done, _: progress("making variants", cached + done, len(functions))) if progress else None
    fresh = executors.map_batches(functools.partial(_diversify_batch, settings), [functions[i] for i in todo],
                                  executor=executor, jobs=jobs, desc="variants", progress=tick)
    for i, vs in zip(todo, fresh):
        made[i] = vs
        if cache:
            disk.store("", keys[i], [[v.ir, list(v.passes), v.cost, v.original_cost] for v in vs])

    candidates = [v for vs in made for v in vs]
    result: dict[str, list[Variant]] = {}
    for variant, error in zip(candidates, verification_errors(text, candidates)):
        error = error and (variant.error or error)  # verify_each named the pass that broke it
        if error and invalid:
            variant = dataclasses.replace(variant, error=error)
        if invalid or not error:
            result.setdefault(variant.function, []).append(variant)
    return result


def _diversify_batch(settings: _Settings, functions: list[tuple[str, str]]) -> list[list[Variant]]:
    """The candidate variants of each (name, text) function: one task's work, in any process."""
    with _LOCK, disk.enabled(settings.cache):
        load_plugins()
        instances = {spec: instantiate(spec) for spec in (*settings.passes, settings.fallback) if spec}
        out = []
        for name, body in functions:
            raise_if_interrupted()
            try:
                fn = Function.parse(body, name)
            except ValueError:
                out.append([])  # a function the editable IR does not model keeps only its original body
                continue
            fn.context = settings.context  # for passes that need the module around it (opt-pipeline)
            check = functools.partial(_verified, settings.context) if settings.verify_each else None
            out.append(_variants(fn, name, instances, settings.passes, settings.count, settings.seed,
                                 settings.random_mode, settings.stack, check, settings.fallback))
        return out


def _code(settings: _Settings) -> str:
    """A digest of the code that makes the candidates: the passes' modules and plugin rules."""
    modules = tuple(sorted({registry[parse_spec(n)[0]].__module__ for n in (*settings.passes, settings.fallback) if n}))
    return disk.digest(disk.code_version(modules), plugin_rules_digest())


def _key(settings: _Settings, name: str, body: str, context: str, code: str) -> str:
    """The cache key of one function's candidates: its text, the settings, the `code` that makes
    them and `context`, the digest of what passes reading the module may depend on."""
    return disk.digest("variants", code, name, body, context, settings.passes, settings.random_mode, settings.stack,
                       settings.seed, settings.count, settings.fallback)


def _skeleton(text: str, spans: list[tuple[str, int, int]]) -> str:
    """`text` without its function bodies and source file name: what a pass reading fn.context
    may depend on. Blocks whose address is taken make bodies part of other functions' context."""
    if "blockaddress(" in text:
        return text
    pieces, last = [], 0
    for _, start, end in spans:
        pieces += [text[last:start], text[start : text.index("\n", start)]]
        last = end
    return _SOURCE_RE.sub("", "".join(pieces) + text[last:])


def _load(key: str, name: str) -> list[Variant] | None:
    """The cached candidates under `key`, or None if there are none (or the entry is damaged)."""
    entry = disk.load("", key)
    if not isinstance(entry, list) or not all(
            isinstance(e, list) and len(e) == 4 and isinstance(e[0], str) and isinstance(e[1], list)
            and all(isinstance(p, str) for p in e[1]) and all(type(c) is int for c in e[2:]) for e in entry):
        return None
    return [Variant(name, ir, tuple(applied), cost=cost, original_cost=original)
            for ir, applied, cost, original in entry]


def _variants(fn: Function, name: str, instances: dict[str, Pass], pipeline: Sequence[str], count: int, seed: int,
              random_mode: bool, stack: int, check: Callable[[Function], str] | None = None,
              fallback: str | None = None) -> list[Variant]:
    seen = {str(fn)}
    original_cost = body_cost(fn)  # costs come from the model in hand: the linker need not walk the parsed IR
    out: list[Variant] = []
    for k in range(count * ATTEMPTS_PER_VARIANT):
        if len(out) == count:
            break
        rng = random.Random(f"{seed}:{name}:{k}")
        clone = fn.copy()
        order = rng.sample(list(pipeline), len(pipeline)) if random_mode else list(pipeline)
        applied: list[str] = []
        error = ""
        surplus = random_mode and fallback and len(out) >= count // 2
        if surplus and original_cost <= TINY_BODY:
            # A tiny body's surplus candidates get the fallback alone, the cheapest variant codegen
            # keeps; where it does not apply (a forwarder with nothing to test), a random stack.
            if _apply(instances[fallback], clone, rng, name):
                applied.append(fallback)
                error = check and _after(fallback, check(clone))
                order = []
            else:
                clone = fn.copy()
        for pass_name in order:
            if random_mode and len(applied) == stack:
                break
            if _apply(instances[pass_name], clone, rng, name):
                applied.append(pass_name)
                error = error or (check and _after(pass_name, check(clone)))
        if surplus and fallback not in applied:
            # The surplus half stands in for variants codegen folds; small functions (forwarders,
            # drop glue) fold under most stacks, so these also carry code codegen must keep.
            if _apply(instances[fallback], clone, rng, name):
                applied.append(fallback)
                error = error or (check and _after(fallback, check(clone)))
        ir = str(clone)
        if applied and ir not in seen:
            seen.add(ir)
            out.append(Variant(name, ir, tuple(applied), error=error or "", cost=body_cost(clone),
                               original_cost=original_cost))
    return out


def _verified(context: str, fn: Function) -> str:
    """Why `fn`, in place of its original in the module `context`, does not verify ("" if it does)."""
    return verification_errors(context, [Variant(fn.name, str(fn))])[0]


def _after(pass_name: str, error: str) -> str:
    return f"invalid after {pass_name}: {error}" if error else ""


def _apply(p: Pass, fn: Function, rng: random.Random, name: str) -> bool:
    """`p.apply`; a pass that raises is a bug in that pass, named in one line (MEWE_DEBUG=1:
    the traceback too)."""
    try:
        return p.apply(fn, rng)
    except MeweError:
        raise
    except Exception as exc:
        if os.environ.get("MEWE_DEBUG"):
            raise
        raise MeweError(f"pass '{p.name}' failed on function {quote_name(name)}: {type(exc).__name__}: {exc} "
                        f"(MEWE_DEBUG=1 shows the traceback)") from None


def verify_variants(module_text: str, variants: list[Variant]) -> list[bool]:
    """Whether each variant, in place of its function, gives a module that parses and verifies."""
    return [not error for error in verification_errors(module_text, variants)]


def verification_errors(module_text: str, variants: list[Variant]) -> list[str]:
    """For each variant, in place of its function, why the module would not parse or verify
    (LLVM's message), or "" if it would. One parse for all, bisecting only on failure."""
    if not variants:
        return []
    copies = []
    for i, v in enumerate(variants):
        header, rest = v.ir.split("\n", 1)
        header = _COMDAT_RE.sub("", header.replace(f"{quote_name(v.function)}(", f"@__mewe_check_{i}(", 1))
        copies.append(f"{header}\n{rest}")
    try:
        parse_module(module_text + "\n" + "\n\n".join(copies) + "\n")
    except RuntimeError as exc:
        if len(variants) == 1:
            return [llvm_error(exc).replace("__mewe_check_0", variants[0].function) or "invalid IR"]
        half = len(variants) // 2
        return verification_errors(module_text, variants[:half]) + verification_errors(module_text, variants[half:])
    return [""] * len(variants)
