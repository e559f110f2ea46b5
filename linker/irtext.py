"""Just enough of LLVM's textual IR to rewrite function definitions.

llvmlite parses and verifies IR but cannot edit it, so the linker edits the module's printed
text: it finds each `define`, splits its header into parts, renames bodies and writes new
functions. Anything it does not recognise makes it skip the function, never guess.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Mapping

from mewe.llvmir import GLOBAL_NAME, quote_name, split_top, unquote_name

OPEN, CLOSE = "([{<", ")]}>"
LINKAGES = {"private", "internal", "available_externally", "linkonce", "weak", "common", "appending",
            "extern_weak", "linkonce_odr", "weak_odr", "external"}
PLACEMENT = LINKAGES | {"dso_local", "dso_preemptable", "default", "hidden", "protected", "dllimport", "dllexport"}
# Parameter/return attributes that change the calling convention: a forwarding call must repeat them.
ABI_ATTRS = ("zeroext", "signext", "inreg", "byval", "byref", "sret", "inalloca", "preallocated",
             "align", "nest", "swiftself", "swifterror", "swiftasync", "noundef")
CCONV = re.compile(r"^(ccc|fastcc|coldcc|tailcc|cc\d+|cc|preserve_\w+|swiftcc|swifttailcc|cxx_fast_tlscc|ghccc|anyregcc|webkit_jscc)$")
NAME = GLOBAL_NAME


def tokens(text: str) -> list[str]:
    """Split on spaces outside brackets and quotes: `ptr byval(%S) align 4 %0` -> 4 tokens."""
    return list(_tokens(text))


_NESTED = re.compile(r'["([{<]')


@functools.lru_cache(maxsize=4096)  # the same attribute groups and headers are split again and again
def _tokens(text: str) -> tuple[str, ...]:
    if not _NESTED.search(text):
        return tuple(text.split())
    out, depth, cur, quoted = [], 0, [], False
    for ch in text:
        if quoted:
            cur.append(ch)
            quoted = ch != '"'
            continue
        if ch == '"':
            quoted = True
        elif ch in OPEN:
            depth += 1
        elif ch in CLOSE:
            depth -= 1
        elif ch.isspace() and depth == 0:
            if cur:
                out.append("".join(cur))
                cur = []
            continue
        cur.append(ch)
    if cur:
        out.append("".join(cur))
    return tuple(out)


@dataclass
class Param:
    type: str
    attrs: list[str]
    name: str

    def abi_attrs(self) -> list[str]:
        return abi_only(self.attrs)


def abi_only(attrs: list[str]) -> list[str]:
    """The attributes a forwarding call must repeat; `align N` stays together."""
    out, i = [], 0
    while i < len(attrs):
        a = attrs[i]
        base = a.split("(")[0]
        if base == "align" and i + 1 < len(attrs):
            out += [a, attrs[i + 1]]
            i += 2
            continue
        if base in ABI_ATTRS:
            out.append(a)
        i += 1
    return out


@dataclass
class Header:
    """`define <prefix...> <ret> @name(<params>) <suffix...> {`, split into parts."""

    prefix: list[str]  # linkage, visibility, calling convention, return attributes
    ret: str
    name: str
    params: list[Param]
    varargs: bool
    suffix: list[str]  # unnamed_addr, #N, section, comdat, align, personality, metadata ...

    @property
    def cconv(self) -> str:
        return next((t for t in self.prefix if CCONV.match(t)), "")

    @property
    def ret_attrs(self) -> list[str]:
        return [t for t in self.prefix if t not in PLACEMENT and not CCONV.match(t)]

    @property
    def attr_group(self) -> str | None:
        return next((t for t in self.suffix if re.fullmatch(r"#\d+", t)), None)

    @property
    def function_type(self) -> str:
        types = [p.type for p in self.params] + (["..."] if self.varargs else [])
        return f"{self.ret} ({', '.join(types)})"

    def render(self, *, name: str | None = None, prefix: list[str] | None = None, suffix: list[str] | None = None) -> str:
        params = [" ".join([p.type, *p.attrs, p.name]) for p in self.params] + (["..."] if self.varargs else [])
        parts = ["define", *(self.prefix if prefix is None else prefix), self.ret,
                 f"{quote_name(name or self.name)}({', '.join(params)})", *(self.suffix if suffix is None else suffix), "{"]
        return " ".join(parts)


class Unsupported(Exception):
    """A construct the text editor does not handle; the function is skipped with this reason."""


@functools.lru_cache(maxsize=1 << 16)  # a function's candidates share its header line; builds link twice
def parse_header(line: str) -> Header:
    """The parts of a `define` line. The Header is shared between calls: treat it as read-only."""
    if not line.startswith("define ") or not line.rstrip().endswith("{"):
        raise Unsupported("definition header not on one line")
    m = re.search(NAME + r"\(", line)
    if not m:
        raise Unsupported("no function name in header")
    before = tokens(line[len("define "):m.start()])
    if not before:
        raise Unsupported("no return type in header")
    # The return type is the last token, or `ptr addrspace(N)`.
    if len(before) >= 2 and before[-1].startswith("addrspace("):
        ret, prefix = " ".join(before[-2:]), before[:-2]
    else:
        ret, prefix = before[-1], before[:-1]
    name = unquote_name(m.group(0)[:-1])
    depth, i = 0, m.end() - 1
    for i in range(m.end() - 1, len(line)):
        depth += line[i] in "([{<"
        depth -= line[i] in ")]}>"
        if depth == 0:
            break
    params_text, rest = line[m.end():i], line[i + 1:].rstrip()[:-1]
    params, varargs = [], False
    for ptext in split_top(params_text) if params_text.strip() else []:
        if ptext == "...":
            varargs = True
            continue
        toks = tokens(ptext)
        if len(toks) < 2 or not toks[-1].startswith("%"):
            raise Unsupported(f"unnamed parameter '{ptext}'")
        ptype, attrs = toks[0], toks[1:-1]
        if attrs and attrs[0].startswith("addrspace("):
            ptype, attrs = f"{ptype} {attrs[0]}", attrs[1:]
        params.append(Param(ptype, attrs, toks[-1]))
    return Header(prefix, ret, name, params, varargs, tokens(rest))


@dataclass
class Definition:
    header: Header
    start: int  # line index of the `define` line
    end: int  # line index of the closing `}`

    def body(self, lines: list[str]) -> list[str]:
        return lines[self.start + 1:self.end + 1]


@dataclass
class ModuleText:
    """A module's printed IR as lines, with its function definitions and attribute groups."""

    lines: list[str]
    definitions: dict[str, Definition] = field(default_factory=dict)
    attribute_groups: dict[str, str] = field(default_factory=dict)  # "#N" -> contents
    header_errors: dict[str, str] = field(default_factory=dict)  # function -> why its header was not parsed

    @classmethod
    def parse(cls, text: str) -> "ModuleText":
        mt = cls(text.split("\n"))
        i = 0
        while i < len(mt.lines):
            line = mt.lines[i]
            if line.startswith("define "):
                end = i
                while mt.lines[end] != "}":
                    end += 1
                try:
                    header = parse_header(line)
                    mt.definitions[header.name] = Definition(header, i, end)
                except Unsupported as why:
                    m = re.search(NAME + r"\(", line)
                    if m:
                        mt.header_errors[unquote_name(m.group(0)[:-1])] = str(why)
                i = end
            elif line.startswith("attributes #"):
                key, _, rest = line[len("attributes "):].partition(" = { ")
                mt.attribute_groups[key] = rest.rstrip().removesuffix("}").strip()
            i += 1
        return mt

    def function_text(self, name: str) -> str:
        d = self.definitions[name]
        return "\n".join(self.lines[d.start:d.end + 1])


_DIRECT_CALL = re.compile(rf"(\b(?:call|invoke)\b[^@]*)({GLOBAL_NAME})\(")


def retarget_calls(body: list[str], targets: Mapping[str, str]) -> list[str]:
    """`body` with its direct calls (and invokes) of each callee in `targets` made to the
    function it maps to (names unquoted). The callee is the first global after `call`; other
    uses of a callee (its address stored or passed on) are left alone."""
    spelled = {quote_name(callee): quote_name(target) for callee, target in targets.items()}

    def site(m: re.Match) -> str:
        return m.group(1) + spelled.get(m.group(2), m.group(2)) + "("

    return [_DIRECT_CALL.sub(site, line) if "call" in line or "invoke" in line else line for line in body]
