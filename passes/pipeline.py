"""`opt-pipeline`: a variant is what a random short sequence of LLVM function passes makes of it.

The function runs through llvmlite's new pass manager inside a small copy of its module: the
top level without metadata, and stubs of the functions it names (function passes never read
other bodies), so a module of many functions costs linear time. The function's metadata
attachments are dropped (their numbers would differ; dropping them only loses information).
The result must fit the original module: attribute groups are mapped back by content, and so are
unnamed struct types (`%0`, `%1`, ...: the printer numbers them by use, and the copy uses fewer,
so its `%0` may be another type of the original), and a result that needs anything the module
lacks (a new declaration, a metadata operand) is refused.
"""

from __future__ import annotations

import random
import re
from functools import lru_cache

import llvmlite.binding as llvm

from mewe.llvmir import GLOBAL_NAME, definitions, parse_module, unquote_name

from .framework import Pass, register
from .ir import Function

# add_<name>_pass methods of llvmlite's function pass manager, each a semantics-preserving pass.
PASSES = ("instruction_combine", "aggressive_instcombine", "reassociate", "sinking", "simplify_cfg", "new_gvn",
          "jump_threading", "loop_rotate", "sccp", "dead_code_elimination", "aggressive_dce", "dead_store_elimination",
          "mem_copy_opt", "sroa", "tail_call_elimination", "lower_switch", "break_critical_edges",
          "unify_function_exit_nodes", "loop_simplify", "lcssa", "loop_deletion", "register_to_memory")
MAX_PASSES = 4
_ATTRS_RE = re.compile(r"^attributes (#\d+) = (\{.*\})$", re.M)
_GROUP_RE = re.compile(r"#\d+\b")
_GLOBAL_RE = re.compile(GLOBAL_NAME)
_TOP_GLOBAL_RE = re.compile(rf'^(?:({GLOBAL_NAME}) = |(?:define|declare) [^\n]*?({GLOBAL_NAME})\()', re.M)
_ATTACHMENT_RE = re.compile(r", ![-a-zA-Z$._0-9]+ (?:!\d+|!\{[^}]*\})")
_TOP_NAME_RE = re.compile(rf'^(?:({GLOBAL_NAME}) = |declare [^\n]*?({GLOBAL_NAME})\()')
_GLOBAL_DEF_RE = re.compile(rf'^({GLOBAL_NAME}) = ((?:[\w()]+ )*?)(?:global|constant) ')
_COMDAT_RE = re.compile(r" comdat(?:\(\$[^)]*\))?")
_HEADER_ATTACHMENT_RE = re.compile(r" ![-a-zA-Z$._0-9]+ !\d+(?= |$)")
_DBG_RECORD_RE = re.compile(r"^\s*#dbg_\w+\(.*\n", re.M)
_BLOCKADDRESS_RE = re.compile(rf'blockaddress\(({GLOBAL_NAME}), ')  # spelled, with its @
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
    """What the pass needs of a module, computed once per module text. A function's copy is
    the module's types, attribute groups and target, plus a declaration of each global the
    function names and a stub of each function it names, so its size does not grow with the
    module (a table of every function's address does not make every copy hold every stub)."""

    def __init__(self, text: str):
        mod = parse_module(text, verify=False)
        spans = definitions(mod, text)
        addressed = {unquote_name(t) for t in _BLOCKADDRESS_RE.findall(text)}  # their blocks must stay
        self.decls: dict[str, str] = {}  # a name the function may use -> the text that declares it
        top, last = [], 0
        for name, start, end in spans:
            top.append(text[last:start])
            last = end
            whole = _without_metadata(_COMDAT_RE.sub("", text[start:end], count=1))
            self.decls[name] = whole if name in addressed else whole[: whole.index("\n")] + "\n  unreachable\n}"
        top.append(text[last:])
        kept = []
        for line in "".join(top).split("\n"):
            m = _TOP_NAME_RE.match(line)
            if m:  # a global, alias or declaration: only for the functions that name it
                self.decls[unquote_name(m[1] or m[2])] = _declaration(line)
            elif line.startswith(("%", "attributes ", "target ")):
                kept.append(line)
        # optnone (every function at -O0) would make the passes skip the function; the variant
        # keeps its original header, so the attribute only matters in this copy.
        self.top = _ATTRS_RE.sub(lambda m: f"attributes {m[1]} = {_OPTNONE_RE.sub('', m[2])}", "\n".join(kept))
        self.groups = {body: group for group, body in _ATTRS_RE.findall(text)}  # content -> #N
        self.globals = {a or b for a, b in _TOP_GLOBAL_RE.findall(text)}
        self.triple = re.search(r'^target triple = "([^"]*)"', text, re.M)
        self.types: dict[str, str] = {}  # shape -> the original's unnamed type of that shape
        for name, shape in type_shapes(text).items():
            self.types.setdefault(shape, name)

    def module_for(self, fn: Function) -> str | None:
        """The module text `fn` is optimized in, or None if `fn` is not one of the module's."""
        if fn.name not in self.decls:
            return None
        body = _without_metadata(_COMDAT_RE.sub("", str(fn), count=1))
        needed, work = {fn.name}, [body]
        while work:  # what the body names, and what aliases among those name
            for name in map(unquote_name, _GLOBAL_RE.findall(work.pop())):
                if name not in needed and name in self.decls:
                    needed.add(name)
                    if " alias " in self.decls[name] or " ifunc " in self.decls[name]:
                        work.append(self.decls[name])
        return "\n".join([self.top, *(self.decls[n] for n in sorted(needed - {fn.name})), body, ""])


def _declaration(line: str) -> str:
    """A global variable's definition line as a declaration (aliases and `declare`s as they
    are): with opaque pointers, uses need only its name, address space and thread-locality."""
    line = _ATTACHMENT_RE.sub("", line)
    m = _GLOBAL_DEF_RE.match(line)
    if not m or " alias " in line or " ifunc " in line:
        return _COMDAT_RE.sub("", line)
    name, words = m[1], m[2].split()
    keep = [w for w in words if w.startswith(("thread_local", "addrspace(", "externally_initialized"))]
    return " ".join([name, "= external", *keep, "global i8"])


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


def _without_metadata(define: str) -> str:
    header, rest = define.split("\n", 1)
    return _HEADER_ATTACHMENT_RE.sub("", header) + "\n" + _strip_metadata(rest)


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
    text = ctx.module_for(fn)
    if text is None:
        return None
    try:
        mod = parse_module(text)
    except RuntimeError:
        return None
    tm, pto = _pass_builder(ctx.triple.group(1) if ctx.triple else "")
    fpm = llvm.create_new_function_pass_manager()
    for p in passes:
        getattr(fpm, f"add_{p}_pass")()
    target = mod.get_function(fn.name)
    fpm.run(target, llvm.create_pass_builder(tm, pto))
    _forget_long_names(target)
    namer = llvm.create_new_function_pass_manager()
    namer.add_instruction_namer_pass()
    namer.run(target, llvm.create_pass_builder(tm, pto))
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


MAX_NAME = 128  # longer local names are dropped (the namer gives new ones)


def _forget_long_names(fn: llvm.ValueRef) -> None:
    """Unname blocks and values whose names grew long: passes that split blocks append a
    suffix to a name each time (`loopexitsplitsplit...`), and LLVM's reader refuses local names
    of more than 1024 characters, so such a variant would not parse."""
    for block in fn.blocks:
        if len(block.name) > MAX_NAME:
            block.name = ""
        for ins in block.instructions:
            if len(ins.name) > MAX_NAME:
                ins.name = ""


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
