"""The utilities passes share: the parameters, the result type of common instructions, which
integer values are available at a point, where code may go, and how to split a block.
"""

from __future__ import annotations

import re

from .analysis import analyze
from .ir import LOCAL, WIDTHS, Block, Function, Instr, int_width, split_top, take_type  # noqa: F401  (WIDTHS: re-exported)

EH_PADS = frozenset("landingpad catchpad cleanuppad catchswitch".split())
CASTS = frozenset("trunc zext sext fptrunc fpext fptoui fptosi uitofp sitofp ptrtoint inttoptr bitcast addrspacecast".split())
_LOCAL_AT_END = re.compile(rf"({LOCAL})$")
_NAME_RE = re.compile(LOCAL)


def params(fn: Function) -> list[tuple[str, str]]:
    """(type, name) of the function's named parameters."""
    header = fn.header
    start = header.index(f"{fn.spelled}(") + len(fn.spelled) + 1
    depth, end = 1, start
    while depth:
        depth += {"(": 1, ")": -1}.get(header[end], 0)
        end += 1
    found = []
    for item in split_top(header[start : end - 1]):
        if not item or item == "...":
            continue
        ty, rest = take_type(item)
        m = _LOCAL_AT_END.search(rest)
        if m:
            found.append((ty, m.group(1)))
    return found


def result_type(ins: Instr) -> str | None:
    """The type of `ins`'s result where it is easy to tell (binops, phis, compares, loads, casts)."""
    if ins.result is None:
        return None
    if ins.text is None:
        if ins.op == "icmp":
            return "i1"
        if ins.op == "select":
            return take_type(ins.args[1])[0]
        return ins.ty or None
    words = ins.text.split(" ")
    if ins.op == "load":
        rest = ins.text[len("load ") :]
        rest = rest[len("volatile ") :] if rest.startswith("volatile ") else rest
        return take_type(rest)[0].rstrip(",")
    if ins.op in CASTS and " to " in ins.text:
        return take_type(ins.text.rsplit(" to ", 1)[1])[0].split(",")[0]
    if ins.op == "freeze" and len(words) > 1:
        return take_type(ins.text[len("freeze ") :])[0]
    return None


def int_values(fn: Function, block_index: int, point: int) -> list[tuple[str, int]]:
    """(name, width) of integer values surely available before instruction `point` of a block:
    the parameters, what the blocks that dominate it computed, and what the block itself
    computed before that point."""
    found = [(name, w) for ty, name in params(fn) if (w := int_width(ty)) in WIDTHS]
    dominators = analyze(fn).dominators(block_index)
    for b, end in [*((d, None) for d in reversed(dominators)), (block_index, point)]:
        for ins in fn.blocks[b].instrs[:end]:
            ty = result_type(ins)
            if ty and (w := int_width(ty)) in WIDTHS:
                found.append((ins.result, w))
    return found


def tail_inputs(tail: list[Instr]) -> list[tuple[str, str]]:
    """(value, type) of integer operands the tail reads but does not define (its ret's too)."""
    defined = {i.result for i in tail if i.result}
    found = {}
    for ins in tail:
        if ins.text is None and ins.op not in ("br", "phi", "select") and int_width(ins.ty) in WIDTHS:
            for a in ins.args:
                if a.startswith("%") and a not in defined:
                    found.setdefault(a, ins.ty)
        elif ins.op == "ret" and ins.text is not None:  # `ret <ty> <value>`: a body that only calls has one
            ty, rest = take_type(ins.text[len("ret "):])
            value = split_top(rest)[0] if rest else ""
            if int_width(ty) in WIDTHS and re.fullmatch(LOCAL, value) and value not in defined:
                found.setdefault(value, ty)
    return list(found.items())


def at_random_points(fn: Function, rng, sites: int, insert) -> bool:
    """Try `insert(block, point, inputs, guards)` at random insertion points until it accepts
    one (returns True), 1 to `sites` times; whether it accepted any. `inputs` are the integer
    values the rest of the block reads (`tail_inputs`), `guards` the integer values available
    there and those inputs, as (value, width). Functions with a phi the model cannot rename
    are left alone: passes that use this split blocks."""
    if any(i.op == "phi" and i.text is not None for i in fn.instructions()):
        return False
    changed = False
    for _ in range(rng.randint(1, max(1, sites))):
        points = insertion_points(fn)
        while points:
            b, p = points.pop(rng.randrange(len(points)))
            inputs = tail_inputs(fn.blocks[b].instrs[p:])
            guards = int_values(fn, b, p) + [(v, int_width(t)) for v, t in inputs]
            if insert(b, p, inputs, guards):
                changed = True
                break
    return changed


def insertion_points(fn: Function) -> list[tuple[int, int]]:
    """(block, index) pairs where new straight-line code may go before instruction `index`."""
    return [(b, p) for b in range(len(fn.blocks)) for p in split_points(fn, b)]


def uses(ins: Instr) -> list[str]:
    """The local names `ins` reads (its own result excluded)."""
    text = str(ins)
    if ins.result:
        text = text.split(" = ", 1)[1]
    return _NAME_RE.findall(text)


def rename_uses(ins: Instr, old: str, new: str) -> None:
    """Make `ins` read `new` where it read `old`."""
    pattern = re.compile(re.escape(old) + r"(?![-a-zA-Z$._0-9])")
    if ins.text is not None:
        ins.text = pattern.sub(new, ins.text)
    else:
        ins.args = [pattern.sub(new, a) for a in ins.args]


def split_points(fn: Function, index: int) -> list[int]:
    """Where block `index` may be cut: after phis, EH pads and the entry's leading allocas; never
    between a musttail call and its ret, nor after a call the block ends unreachable behind."""
    instrs = fn.blocks[index].instrs
    start = fn.blocks[index].phi_count
    if start < len(instrs) and instrs[start].op in EH_PADS:
        start += 1
    if index == 0:  # allocas stay in the entry block, static
        while start < len(instrs) and instrs[start].op == "alloca":
            start += 1
    end = len(instrs)
    if instrs and instrs[-1].op == "unreachable":
        # nothing after a call that does not return (`call @abort(); unreachable`): LLVM's wasm
        # backend crashes on values defined after a trap and used in a later block
        calls = [i for i, ins in enumerate(instrs) if ins.op in ("call", "invoke", "callbr", "tail", "musttail", "notail")]
        end = calls[-1] + 1 if calls else end
    return [i for i in range(start, end) if i == 0 or not (instrs[i - 1].text or "").startswith("musttail ")]


def split_block(fn: Function, index: int, point: int) -> None:
    """Cut block `index` before instruction `point` (one of `split_points`): the tail becomes a
    new block right after it, reached by an unconditional branch."""
    head = fn.blocks[index]
    label = fn.fresh(head.label)
    tail = Block(label[1:], head.instrs[point:])
    head.instrs = head.instrs[:point] + [Instr("br", args=[f"label {label}"])]
    fn.blocks.insert(index + 1, tail)
    old = f"%{head.label}"
    for ins in fn.instructions():  # predecessors named in phis: the terminator moved to `tail`
        if ins.op == "phi" and ins.text is None:
            ins.args[1::2] = [label if b == old else b for b in ins.args[1::2]]
