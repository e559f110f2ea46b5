"""An editable LLVM IR function: blocks of instruction records, parsed from LLVM's printed text.

llvmlite reads IR but cannot change it, so passes work on this small model and print it back.
Values and blocks are named first (`name_values`): inserted or moved code then never disturbs
LLVM's sequential numbering of unnamed values. Whatever the model does not understand is kept
verbatim; only what passes rewrite (integer binops, icmp, select, br, phi) is structured.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import llvmlite.binding as llvm

from mewe.llvmir import GLOBAL_NAME, quote_name, split_top, unquote_name  # noqa: F401  (passes import split_top from here)

LOCAL = r'%(?:[-a-zA-Z$._0-9]+|"[^"]*")'
_LOCAL_RE = re.compile(LOCAL)
_RESULT_RE = re.compile(rf"({LOCAL}) = (.*)")
_LABEL_RE = re.compile(r'([-a-zA-Z$._0-9]+|"[^"]*"):(?:\s|$)')
_DEFINE_RE = re.compile(rf"^define [^\n]*?({GLOBAL_NAME})\(")
_INT_TYPE_RE = re.compile(r"i(\d+)")

WIDTHS = (8, 16, 32, 64)  # the integer widths passes rewrite (and rules are proven at)
BINOPS = frozenset("add sub mul udiv sdiv urem srem shl lshr ashr and or xor".split())
COMMUTATIVE = frozenset("add mul and or xor".split())
INT_FLAGS = frozenset("nuw nsw exact disjoint".split())
FAST_MATH = frozenset("nnan ninf nsz arcp contract afn reassoc fast".split())
PREDICATES = frozenset("eq ne ugt uge ult ule sgt sge slt sle".split())
TERMINATORS = frozenset("br switch ret unreachable indirectbr invoke resume callbr catchswitch catchret cleanupret".split())


def int_width(ty: str) -> int | None:
    """The bit width of a scalar integer type (`i32` -> 32), else None."""
    m = _INT_TYPE_RE.fullmatch(ty)
    return int(m.group(1)) if m else None


def take_type(text: str) -> tuple[str, str]:
    """Split a leading type off `text`: `<4 x i32> %a, %b` -> (`<4 x i32>`, `%a, %b`)."""
    if text[:1] in ("<", "{", "["):
        depth = 0
        for i, ch in enumerate(text):
            depth += ch in "<{[("
            depth -= ch in ">}])"
            if depth == 0:
                return text[: i + 1], text[i + 1 :].lstrip()
        raise ValueError(text)
    ty, _, rest = text.partition(" ")
    if ty == "ptr" and rest.startswith("addrspace("):
        space, _, rest = rest.partition(" ")
        ty = f"{ty} {space}"
    return ty, rest


def _take_words(words: list[str], allowed: frozenset[str]) -> list[str]:
    taken = []
    while words and words[0] in allowed:
        taken.append(words.pop(0))
    return taken


@dataclass(eq=False)
class Instr:
    """One instruction. Structured when `text` is None; otherwise `text` is kept verbatim.

    Binops and icmp keep the operand type in `ty` and untyped operands in `args`; select and br
    keep typed operands (`i1 %c`, `label %bb`) in `args`; phi keeps `ty` and flat
    [value, label, value, label, ...] pairs. `meta` is trailing `, !name !N` text.
    """

    op: str
    result: str | None = None
    flags: list[str] = field(default_factory=list)  # nsw, nuw, exact, disjoint, samesign, fast-math
    pred: str = ""  # icmp's predicate
    ty: str = ""
    args: list[str] = field(default_factory=list)
    meta: str = ""
    text: str | None = None  # everything after `%r = `, for instructions not modelled

    @property
    def is_terminator(self) -> bool:
        return self.op in TERMINATORS

    @property
    def incoming(self) -> list[tuple[str, str]]:
        """A phi's (value, label) pairs."""
        return list(zip(self.args[::2], self.args[1::2]))

    def copy(self) -> Instr:
        return Instr(self.op, self.result, list(self.flags), self.pred, self.ty, list(self.args), self.meta, self.text)

    def __str__(self) -> str:
        head = f"  {self.result} = " if self.result else "  "
        if self.text is not None:
            return head + self.text
        words = [self.op, *self.flags]
        if self.pred:
            words.append(self.pred)
        if self.ty:
            words.append(self.ty)
        if self.op == "phi":
            operands = ", ".join(f"[ {v}, {b} ]" for v, b in self.incoming)
        else:
            operands = ", ".join(self.args)
        return f"{head}{' '.join(words)} {operands}{self.meta}"

    @classmethod
    def parse(cls, line: str) -> Instr:
        body = line.strip()
        result = None
        m = _RESULT_RE.fullmatch(body)
        if m:
            result, body = m.groups()
        op = body.split(" ", 1)[0]
        try:
            parsed = _parse_structured(op, body)
        except (ValueError, IndexError):
            parsed = None
        if parsed is None:
            return cls(op, result, text=body)
        parsed.result = result
        return parsed


def _meta(items: list[str]) -> str:
    if not all(i.startswith("!") for i in items):
        raise ValueError(items)
    return "".join(", " + i for i in items)


def _parse_structured(op: str, body: str) -> Instr | None:
    words = body.split(" ")[1:]
    if op in BINOPS or op == "icmp":
        flags = _take_words(words, INT_FLAGS | {"samesign"})
        pred = ""
        if op == "icmp":
            pred = words.pop(0)
            if pred not in PREDICATES:
                return None
        ty, rest = take_type(" ".join(words))
        items = split_top(rest)
        if len(items) < 2:
            return None
        return Instr(op, flags=flags, pred=pred, ty=ty, args=items[:2], meta=_meta(items[2:]))
    if op == "select":
        flags = _take_words(words, FAST_MATH)
        items = split_top(" ".join(words))
        return Instr(op, flags=flags, args=items[:3], meta=_meta(items[3:])) if len(items) >= 3 else None
    if op == "br":
        items = split_top(" ".join(words))
        n = 1 if items[0].startswith("label ") else 3
        targets = items[n - 1 : n] if n == 1 else items[1:3]
        if len(items) < n or not all(t.startswith("label ") for t in targets):
            return None
        return Instr(op, args=items[:n], meta=_meta(items[n:]))
    if op == "phi":
        flags = _take_words(words, FAST_MATH)
        ty, rest = take_type(" ".join(words))
        items = split_top(rest)
        pairs = [i for i in items if i.startswith("[")]
        args = []
        for pair in pairs:
            if not pair.endswith("]"):
                return None
            value, label = split_top(pair[1:-1])
            args += [value, label]
        return Instr(op, flags=flags, ty=ty, args=args, meta=_meta(items[len(pairs) :]))
    return None


@dataclass(eq=False)
class Block:
    label: str  # without the '%'
    instrs: list[Instr] = field(default_factory=list)

    @property
    def phi_count(self) -> int:
        n = 0
        while n < len(self.instrs) and self.instrs[n].op == "phi":
            n += 1
        return n

    def copy(self) -> Block:
        return Block(self.label, [i.copy() for i in self.instrs])


@dataclass(eq=False)
class Function:
    """A function definition: its `define ... {` line, and its blocks (the entry first)."""

    name: str  # the function's symbol, unescaped (`p(q)`, not `@"p(q)"`); see `spelled`
    header: str
    blocks: list[Block]
    names: set[str] = field(default_factory=set)  # local names in use ('%x'), for `fresh`
    counter: int = 0
    context: str = field(default="", repr=False)  # the (named) module text it came from, if known

    def fresh(self, base: str = "mw") -> str:
        """A local name (with '%') not yet used in this function."""
        base = re.sub(r"[^-a-zA-Z$._0-9]", "_", base.strip('%"')) or "mw"
        while True:
            self.counter += 1
            name = f"%{base}.{self.counter}"
            if name not in self.names and f'%"{name[1:]}"' not in self.names:  # LLVM may quote either
                self.names.add(name)
                return name

    @property
    def spelled(self) -> str:
        """The name as the IR spells it: `@f`, or `@"p(q)"`."""
        return quote_name(self.name)

    def instructions(self):
        for block in self.blocks:
            yield from block.instrs

    def use_counts(self) -> dict[str, int]:
        """How often each local name is used as an operand (definitions not counted)."""
        counts: dict[str, int] = {}
        for ins in self.instructions():
            text = str(ins)
            if ins.result:
                text = text.split(" = ", 1)[1]
            for name in _LOCAL_RE.findall(text):
                counts[name] = counts.get(name, 0) + 1
        return counts

    def copy(self) -> Function:
        return Function(self.name, self.header, [b.copy() for b in self.blocks], set(self.names), self.counter, self.context)

    def __str__(self) -> str:
        lines = [self.header]
        for i, block in enumerate(self.blocks):
            if i:
                lines.append("")
            lines.append(f"{block.label}:")
            lines.extend(str(ins) for ins in block.instrs)
        lines.append("}")
        return "\n".join(lines)

    @classmethod
    def parse(cls, text: str, name: str | None = None) -> Function:
        """Parse one `define ... { ... }` as LLVM prints it, every block labelled. `name` is the
        function's name as llvmlite gives it; without it, it is read from the header."""
        lines = _name_numbered(text.strip("\n").split("\n"))
        text = "\n".join(lines)
        header = lines[0]
        m = _DEFINE_RE.match(header)
        if not m or lines[-1] != "}" or not header.endswith("{"):
            raise ValueError("not a function definition")
        if name is not None and quote_name(name) != m.group(1):
            raise ValueError(f"the header defines {m.group(1)}, not {quote_name(name)}")
        blocks: list[Block] = []
        pending: list[str] = []  # a multi-line instruction (switch, indirectbr) being read
        for line in lines[1:-1]:
            if pending:
                pending.append(line)
                if line.strip().startswith("]"):
                    blocks[-1].instrs.append(Instr.parse("\n".join(pending)))
                    pending = []
                continue
            if not line.strip() or line.lstrip().startswith(";"):
                continue
            if not line.startswith(" "):
                lm = _LABEL_RE.match(line)
                if not lm:
                    raise ValueError(f"unexpected line: {line}")
                blocks.append(Block(lm.group(1)))
                continue
            if not blocks:
                raise ValueError("the entry block has no label; run name_values first")
            if line.rstrip().endswith("["):
                pending = [line]
                continue
            last = blocks[-1].instrs[-1] if blocks[-1].instrs else None
            if last is not None and last.text is not None and _continues(last.op, line):
                last.text += "\n" + line  # `invoke ...` / `to label ...`, landingpad clauses
                continue
            blocks[-1].instrs.append(Instr.parse(line))
        fn = cls(unquote_name(m.group(1)), header, blocks)
        fn.names = set(_LOCAL_RE.findall(text)) | {f"%{b.label}" for b in blocks}
        return fn


# Instructions LLVM prints over several lines, and the words their continuation lines start with.
_CONTINUED = {"invoke": ("to",), "callbr": ("to",), "landingpad": ("catch", "filter", "cleanup")}


def _continues(op: str, line: str) -> bool:
    return line.split(None, 1)[0] in _CONTINUED.get(op, ())


_NUMBERED_RE = re.compile(r"%(\d+)(?![-a-zA-Z$._0-9])")


def _name_numbered(lines: list[str]) -> list[str]:
    """Name a function's numbered values and blocks (%7 -> %_7), labelling the entry block.

    LLVM's instnamer skips `optnone` functions (all of them at -O0); numbered values must stay
    in order, which moved or inserted code would break.
    """
    header, body = lines[0], "\n".join(lines[1:])
    args = [int(n) for n in _NUMBERED_RE.findall(header)]
    if not args and not _NUMBERED_RE.search(body):
        return lines
    defined = set(args)
    defined |= {int(n) for n in re.findall(r"^\s+%(\d+) = ", body, re.M)}
    defined |= {int(n) for n in re.findall(r"^(\d+):", body, re.M)}
    first = next((line for line in lines[1:] if line.strip() and not line.lstrip().startswith(";")), "")
    if first.startswith(" "):  # the entry block is unlabelled: it takes the number after the arguments
        entry = max(args) + 1 if args else 0
        defined.add(entry)
        body = f"{entry}:\n{body}"
    prefix = "_"
    while re.search(rf"%{prefix}\d", header + body):
        prefix += "_"

    def rename(m: re.Match) -> str:
        return f"%{prefix}{m.group(1)}" if int(m.group(1)) in defined else m.group(0)

    header = _NUMBERED_RE.sub(rename, header)
    body = re.sub(r"^(\d+):", lambda m: f"{prefix}{m.group(1)}:", _NUMBERED_RE.sub(rename, body), flags=re.M)
    return [header, *body.split("\n")]


def name_values(mod: llvm.ModuleRef) -> None:
    """Give every unnamed value and block of `mod` a name (LLVM's instnamer: %i7, %bb3, %arg)."""
    llvm.initialize_all_targets()
    llvm.initialize_all_asmprinters()
    tm = llvm.Target.from_triple(mod.triple or llvm.get_default_triple()).create_target_machine()
    pm = llvm.create_new_module_pass_manager()
    pm.add_instruction_namer_pass()
    pm.run(mod, llvm.create_pass_builder(tm, llvm.create_pipeline_tuning_options()))
