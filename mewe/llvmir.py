"""Parsing LLVM IR with llvmlite, shared by every stage.

Each parse gets a fresh LLVM context: named struct types live in a context, and a second
module parsed into the same one would print `%struct.S` as `%struct.S.0`, so IR text taken
from one parse would not fit another. llvmlite is not thread-safe: call from one thread.

A context must outlive its modules, but when a module and its context become garbage together
(a reference cycle, a traceback), Python may finalize the context first and LLVM then frees the
module from freed memory. So contexts made here are disposed only once they have been released
and every module parsed into them is closed.
"""

from __future__ import annotations

import ctypes
import re

import llvmlite.binding as llvm

from mewe.errors import MeweError

BITCODE_MAGIC = (b"BC\xc0\xde", b"\xde\xc0\x17\x0b")


# A global's name as LLVM spells it: bare, or quoted with `\` doubled and every other byte that
# is not printable ASCII (and `"`) written as \XX, so a quoted name never holds a `"`.
GLOBAL_NAME = r'@(?:"[^"]*"|[-a-zA-Z$._0-9]+)'
_BARE = re.compile(r"[-a-zA-Z._][-a-zA-Z._0-9]*")  # what LLVM prints unquoted ($ it quotes, though it reads it bare)
_ESCAPE = re.compile(rb"\\(\\|[0-9A-Fa-f]{2})")


def quote_name(name: str, sigil: str = "@") -> str:
    """`name` (as llvmlite gives it, unescaped) spelled as LLVM prints it: `p(q)` -> `@"p(q)"`."""
    if _BARE.fullmatch(name):
        return sigil + name
    spelled = "".join("\\\\" if b == 0x5C else chr(b) if 0x20 <= b < 0x7F and b != 0x22 else f"\\{b:02X}"
                      for b in name.encode())
    return f'{sigil}"{spelled}"'


def unquote_name(token: str) -> str:
    """The name a spelled `@name` or `%name` token stands for (the inverse of quote_name)."""
    body = token[1:]
    if not body.startswith('"'):
        return body
    raw = _ESCAPE.sub(lambda m: b"\\" if m[1] == b"\\" else bytes([int(m[1], 16)]),
                      body[1:-1].encode("utf-8", "surrogateescape"))
    return raw.decode("utf-8", "surrogateescape")


def definitions(mod: llvm.ModuleRef, text: str, names: list[str] | None = None) -> list[tuple[str, int, int]]:
    """(name, start, end) of each function definition in `text`, the printed `mod`: names from
    llvmlite, unescaped (or `names`, the defined functions' in module order, if the caller has
    them); offsets of the `define` line and just past its closing `}`.
    LLVM prints definitions in module order, each from a `define ` line to a `}` line."""
    if names is None:
        names = [f.name for f in mod.functions if not f.is_declaration]
    spans, at = [], 0
    text = text if text.endswith("\n") else text + "\n"
    for name in names:
        start = 0 if at == 0 and text.startswith("define ") else text.find("\ndefine ", at) + 1
        end = text.index("\n}\n", start) + 2
        if f"{quote_name(name)}(" not in text[start:text.index("\n", start)]:
            raise ValueError(f"the definition of {quote_name(name)} is not where LLVM prints it")
        spans.append((name, start, end))
        at = end
    return spans


def split_top(text: str) -> list[str]:
    """Split at commas outside brackets and quotes: `i32 %a, <2 x i8> <i8 1, i8 2>` -> 2 items."""
    items, depth, start, quoted = [], 0, 0, False
    for i, ch in enumerate(text):
        if ch == '"':
            quoted = not quoted
        elif quoted:
            continue
        elif ch in "([{<":
            depth += 1
        elif ch in ")]}>":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(text[start:i].strip())
            start = i + 1
    items.append(text[start:].strip())
    return items


def instruction_count(body_lines) -> int:
    """How many instructions a printed function body has (they are indented; labels are not)."""
    return sum(1 for line in body_lines if line.startswith("  ") and line.strip())


LOOP_WEIGHT = 8  # a loop's instructions count this many times per level of nesting (up to 3)
FRAME_COST = 8  # a stack slot makes a frame on wasm's shadow stack: stack-pointer loads and stores


def function_cost(fn: llvm.ValueRef) -> int:
    """`cfg_cost` of a defined function, from the CFG llvmlite gives (about 1 ms per body: passes
    that hold a function already compute it from their own model; see Variant.cost)."""
    blocks = list(fn.blocks)
    if not blocks:
        return 0
    index = {_address(b): i for i, b in enumerate(blocks)}
    sizes, succs, alloca = [], [], False
    for b in blocks:
        instructions = list(b.instructions)
        alloca = alloca or any(i.opcode == "alloca" for i in instructions)
        sizes.append(len(instructions))
        succs.append([index[_address(o)] for o in instructions[-1].operands
                      if o.value_kind == llvm.ValueKind.basic_block] if instructions else [])
    return cfg_cost(sizes, succs, alloca)


def cfg_cost(sizes: list[int], succs: list[list[int]], alloca: bool) -> int:
    """A static run-time cost estimate of a function body, given per block (the entry first) its
    instruction count and successors, and whether it has stack slots: its instructions, each
    weighted LOOP_WEIGHT ** (the natural loops around its block, up to 3), and FRAME_COST for
    stack slots."""
    if not sizes:
        return 0
    succs = [sorted(set(targets)) for targets in succs]  # the walk's order then never depends on operand order
    preds: list[list[int]] = [[] for _ in sizes]
    for u, targets in enumerate(succs):
        for v in targets:
            preds[v].append(u)
    # Back edges (to a block on the depth-first stack) name loop headers and their latches.
    latches: dict[int, list[int]] = {}
    state = [1] + [0] * (len(sizes) - 1)  # 0 unvisited, 1 on the stack, 2 done
    stack = [(0, iter(succs[0]))]
    while stack:
        u, it = stack[-1]
        v = next(it, None)
        if v is None:
            state[u] = 2
            stack.pop()
        elif state[v] == 1:
            latches.setdefault(v, []).append(u)
        elif state[v] == 0:
            state[v] = 1
            stack.append((v, iter(succs[v])))
    depth = [0] * len(sizes)
    for header, ends in latches.items():
        body, work = {header}, [e for e in ends if e != header]
        while work:  # the blocks that reach a latch without passing the header
            w = work.pop()
            if w not in body:
                body.add(w)
                work += preds[w]
        for w in body:
            depth[w] += 1
    return FRAME_COST * alloca + sum(n * LOOP_WEIGHT ** min(3, d) for n, d in zip(sizes, depth))


def _address(ref: llvm.ValueRef) -> int:
    return ctypes.cast(ref._ptr, ctypes.c_void_p).value


def llvm_error(exc: Exception) -> str:
    """The line of an llvmlite error that says what is wrong, without its position prefix."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in lines:
        if "error:" in line:
            return line.split("error:", 1)[1].strip()
    return lines[0] if lines else type(exc).__name__


class _Lifetime:
    """Counts a context's open modules; disposes the context after the last, once released."""

    def __init__(self, pointer):
        self.pointer, self.modules, self.released = pointer, 0, False

    def release(self) -> None:
        self.released = True
        self._maybe_dispose()

    def module_closed(self) -> None:
        self.modules -= 1
        self._maybe_dispose()

    def _maybe_dispose(self) -> None:
        if self.released and self.modules == 0 and self.pointer is not None:
            pointer, self.pointer = self.pointer, None
            llvm.ffi.lib.LLVMPY_ContextDispose(pointer)


def new_context() -> llvm.ContextRef:
    """A fresh LLVM context whose disposal waits for the modules parsed into it."""
    context = llvm.create_context()
    context._mewe_lifetime = life = _Lifetime(context._ptr)
    context._dispose = life.release
    return context


def _track(module: llvm.ModuleRef, context: llvm.ContextRef) -> None:
    life = getattr(context, "_mewe_lifetime", None)
    if life is None:
        return
    life.modules += 1
    close = module.close

    def close_then_count() -> None:
        if module.closed:
            return
        try:
            close()
        finally:
            life.module_closed()

    module.close = close_then_count


def parse_module(data: bytes | str, *, context: llvm.ContextRef | None = None, verify: bool = True) -> llvm.ModuleRef:
    """Parse IR text or bitcode (told apart by the bitcode magic) into a fresh (or the given) context.

    Raises RuntimeError from llvmlite on bad IR; callers turn it into a MeweError with their context.
    """
    ctx = context or new_context()
    if isinstance(data, bytes) and data[:4] in BITCODE_MAGIC:
        mod = llvm.parse_bitcode(data, context=ctx)
    else:
        mod = llvm.parse_assembly(data.decode("utf-8") if isinstance(data, bytes) else data, context=ctx)
    _track(mod, ctx)
    if verify:
        mod.verify()
    return mod


def parse_checked(data: bytes | str, origin: str) -> llvm.ModuleRef:
    """`parse_module`, with bad IR reported as one MeweError line naming `origin`."""
    try:
        return parse_module(data)
    except (RuntimeError, UnicodeDecodeError) as exc:
        raise MeweError(f"{origin}: invalid LLVM IR: {llvm_error(exc)}") from None
