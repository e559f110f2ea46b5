"""`opt-pipeline`: a variant is what a random short sequence of LLVM function passes makes of it.

The function runs through llvmlite's new pass manager inside a copy of its module in which every
other function's body is a stub (function passes never read other bodies; parsing is cheaper).
The result must fit the original module: attribute groups are mapped back by content, and so are
unnamed struct types (`%0`, `%1`, ...: the printer numbers them by use, and the stubbed copy uses
fewer, so its `%0` may be another type of the original), metadata attachments are dropped (their numbers differ; dropping them only loses information), and a
result that needs anything the module lacks (a new declaration, a metadata operand) is refused.
"""

from __future__ import annotations

import random
import re
from functools import lru_cache

import llvmlite.binding as llvm

from mewe.llvmir import parse_module

from .framework import Pass, register
from .ir import Function, function_spans

# add_<name>_pass methods of llvmlite's function pass manager, each a semantics-preserving pass.
PASSES = ("instruction_combine", "aggressive_instcombine", "reassociate", "sinking", "simplify_cfg", "new_gvn",
          "jump_threading", "loop_rotate", "sccp", "dead_code_elimination", "aggressive_dce", "dead_store_elimination",
          "mem_copy_opt", "sroa", "tail_call_elimination", "lower_switch", "break_critical_edges",
          "unify_function_exit_nodes", "loop_simplify", "lcssa", "loop_deletion", "register_to_memory")
MAX_PASSES = 4
_ATTRS_RE = re.compile(r"^attributes (#\d+) = (\{.*\})$", re.M)
_GROUP_RE = re.compile(r"#\d+\b")
_GLOBAL_RE = re.compile(r'@(?:[-a-zA-Z$._0-9]+|"[^"]*")')
_TOP_GLOBAL_RE = re.compile(r'^(?:(@(?:[-a-zA-Z$._0-9]+|"[^"]*")) = |(?:define|declare) [^\n]*?(@(?:[-a-zA-Z$._0-9]+|"[^"]*"))\()', re.M)
_ATTACHMENT_RE = re.compile(r", ![-a-zA-Z$._0-9]+ (?:!\d+|!\{[^}]*\})")
_DBG_RECORD_RE = re.compile(r"^\s*#dbg_\w+\(.*\n", re.M)
_BLOCKADDRESS_RE = re.compile(r'blockaddress\(@([-a-zA-Z$._0-9]+|"[^"]*"), ')
_OPTNONE_RE = re.compile(r" optnone\b")
_NUMBERED_TYPE_RE = re.compile(r"^(%\d+) = type (.*)$", re.M)
_NUMBERED_RE = re.compile(r"%\d+\b")


def type_shapes(text: str) -> dict[str, str]:
    """Each unnamed struct type of a module (`%N`) -> its body with nested unnamed types expanded."""
    bodies = dict(_NUMBERED_TYPE_RE.findall(text))
    shapes: dict[str, str] = {}

    def shape(name: str) -> str:
        if name not in shapes:
            shapes[name] = _NUMBERED_RE.sub(lambda m: shape(m[0]) if m[0] in bodies else m[0], bodies[name])
        return shapes[name]

    for name in bodies:
        shape(name)
    return shapes


class _Context:
    """What the pass needs of a module, computed once per module text."""

    def __init__(self, text: str):
        spans = function_spans(text)
        addressed = set(_BLOCKADDRESS_RE.findall(text))  # their blocks must stay
        self.pieces: dict[str, tuple[str, str]] = {}  # function -> (text before, text after) its stub
        stubbed, last = [], 0
        for name, (start, end) in sorted(spans.items(), key=lambda kv: kv[1]):
            header = text[start : text.index("\n", start)]
            stub = text[start:end] if name in addressed else header + "\n  unreachable\n}"
            stubbed += [text[last:start], stub]
            last = end
        stubbed.append(text[last:])
        # optnone (every function at -O0) would make the passes skip the function; the variant
        # keeps its original header, so the attribute only matters in this copy.
        stubbed = [_ATTRS_RE.sub(lambda m: f"attributes {m[1]} = {_OPTNONE_RE.sub('', m[2])}", piece) for piece in stubbed]
        for k, name in enumerate(sorted(spans, key=lambda n: spans[n])):
            self.pieces[name] = ("".join(stubbed[: 2 * k + 1]), "".join(stubbed[2 * k + 2 :]))
        self.groups = {body: group for group, body in _ATTRS_RE.findall(text)}  # content -> #N
        self.globals = {a or b for a, b in _TOP_GLOBAL_RE.findall(text)}
        self.triple = re.search(r'^target triple = "([^"]*)"', text, re.M)
        self.types: dict[str, str] = {}  # shape -> the original's unnamed type of that shape
        for name, shape in type_shapes(text).items():
            self.types.setdefault(shape, name)


@lru_cache(maxsize=4)
def _context(text: str) -> _Context:
    return _Context(text)


@lru_cache(maxsize=4)
def _pass_builder(triple: str):
    llvm.initialize_all_targets()
    llvm.initialize_all_asmprinters()
    tm = llvm.Target.from_triple(triple or llvm.get_default_triple()).create_target_machine()
    return tm, llvm.create_pipeline_tuning_options()


def _strip_metadata(body: str) -> str:
    return _ATTACHMENT_RE.sub("", _DBG_RECORD_RE.sub("", body))


def optimize(fn: Function, passes: list[str]) -> Function | None:
    """`fn` after `passes`, fitted to its module; None if it does not fit."""
    key = (fn.context, str(fn), tuple(passes))
    if key not in _results:
        if len(_results) > MAX_CACHED:
            _results.clear()
        _results[key] = _optimize(fn, passes)
    body = _results[key]
    if body is None:
        return None
    try:
        new = Function.parse(fn.header + "\n" + body)
    except ValueError:
        return None
    new.context = fn.context
    return new


_results: dict[tuple, str | None] = {}  # (module, function, passes) -> the body it becomes
MAX_CACHED = 1024


def _optimize(fn: Function, passes: list[str]) -> str | None:
    ctx = _context(fn.context)
    if fn.name not in ctx.pieces:
        return None
    before, after = ctx.pieces[fn.name]
    try:
        mod = parse_module(before + str(fn) + after)
    except RuntimeError:
        return None
    tm, pto = _pass_builder(ctx.triple.group(1) if ctx.triple else "")
    fpm = llvm.create_new_function_pass_manager()
    for p in passes:
        getattr(fpm, f"add_{p}_pass")()
    fpm.add_instruction_namer_pass()
    target = mod.get_function(fn.name.strip('"'))
    fpm.run(target, llvm.create_pass_builder(tm, pto))
    out = str(mod)
    groups = {group: body for group, body in _ATTRS_RE.findall(out)}  # this module's #N -> content
    text = str(target)
    body = _strip_metadata(text[text.index("{\n") + 2 :])
    if "!" in body or any(g not in ctx.globals for g in _GLOBAL_RE.findall(body)):
        return None  # needs metadata or a declaration the module lacks
    try:
        body = _GROUP_RE.sub(lambda m: ctx.groups[groups[m.group(0)]], body)
        # after the instruction namer, every %N left in the body is an unnamed type
        shapes = type_shapes(out)
        body = _NUMBERED_RE.sub(lambda m: ctx.types[shapes[m[0]]], body)
    except KeyError:
        return None  # an attribute set or a type the module does not have
    return body


@register
class OptPipeline(Pass):
    name = "opt-pipeline"
    description = "runs a random short sequence of LLVM function passes over the function"
    uses_context = True

    def apply(self, fn: Function, rng: random.Random) -> bool:
        if not fn.context:
            return False
        passes = [rng.choice(PASSES) for _ in range(rng.randint(1, MAX_PASSES))]
        new = optimize(fn, passes)
        if new is None or str(new) == _strip_metadata(str(fn)):
            return False
        fn.blocks, fn.names, fn.counter = new.blocks, new.names, new.counter
        return True
