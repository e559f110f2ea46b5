"""A minimal reader for wasm binaries: sections, imports, exports, and function bodies by name.

Enough to check what a build produced (imports, the name section) and to compare the code
of functions across modules, without another dependency.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mewe.errors import MeweError
from mewe.types import Dispatcher

MAGIC = b"\0asm\x01\0\0\0"
COMPONENT_MAGIC = b"\0asm\x0d\0\x01\0"  # version 13, layer 1: a component (the component model)


def not_a_module(data: bytes) -> str | None:
    """Why `data` is not a core wasm module, in a few words; None when it is one."""
    if data[:8] == MAGIC:
        return None
    if data[:8] == COMPONENT_MAGIC:
        return "a WASI component; this takes a core module (build it with --emit module)"
    return "not a wasm module (bad magic or version)"
# The custom section naming each dispatcher (by id) and its variant count, for hosts that trace.
DISPATCH_SECTION = "mewe.dispatchers"
CUSTOM, TYPE, IMPORT, FUNCTION, TABLE, MEMORY, GLOBAL, EXPORT, START, ELEMENT, CODE, DATA = 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11


class _Reader:
    def __init__(self, data: bytes, pos: int = 0, end: int | None = None):
        self.data, self.pos, self.end = data, pos, len(data) if end is None else end

    def byte(self) -> int:
        if self.pos >= self.end:
            raise MeweError("truncated wasm module")
        b = self.data[self.pos]
        self.pos += 1
        return b

    def u32(self) -> int:
        result = shift = 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7

    def bytes(self, n: int) -> bytes:
        if self.pos + n > self.end:
            raise MeweError("truncated wasm module")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def name(self) -> str:
        return self.bytes(self.u32()).decode("utf-8", "replace")


@dataclass
class WasmModule:
    """The parts of a module mewe looks at."""

    imports: list[tuple[str, str, int]] = field(default_factory=list)  # (module, name, kind)
    exports: list[tuple[str, int, int]] = field(default_factory=list)  # (name, kind, index)
    imported_functions: int = 0
    bodies: list[bytes] = field(default_factory=list)  # code of defined functions, in index order
    function_names: dict[int, str] = field(default_factory=dict)  # function index -> name
    custom_sections: list[str] = field(default_factory=list)

    def code_by_name(self) -> dict[str, bytes]:
        """Body bytes of each defined function that has a name."""
        out = {}
        for i, body in enumerate(self.bodies):
            name = self.function_names.get(self.imported_functions + i)
            if name is not None:
                out[name] = body
        return out


def _skip_limits(r: _Reader) -> None:
    flags = r.byte()
    r.u32()
    if flags & 1:
        r.u32()


def _import_desc(r: _Reader) -> int:
    """Read past an import's descriptor; its kind (0 function, 1 table, 2 memory, 3 global, 4 tag)."""
    kind = r.byte()
    if kind == 0:
        r.u32()
    elif kind == 1:
        r.byte()
        _skip_limits(r)
    elif kind == 2:
        _skip_limits(r)
    elif kind == 3:
        r.byte(), r.byte()
    else:
        r.byte(), r.u32()  # tag
    return kind


def _import(r: _Reader, mod: WasmModule) -> None:
    module, name = r.name(), r.name()
    kind = _import_desc(r)
    mod.imported_functions += kind == 0
    mod.imports.append((module, name, kind))


def _names(r: _Reader, mod: WasmModule) -> None:
    while r.pos < r.end:
        sub, size = r.byte(), r.u32()
        end = r.pos + size
        if sub == 1:  # function names
            for _ in range(r.u32()):
                idx = r.u32()
                mod.function_names[idx] = r.name()
        r.pos = end


def _symbols(r: _Reader, mod: WasmModule) -> None:
    """An object file's symbol table (the `linking` section): it names functions, local ones too."""
    r.u32()  # version
    while r.pos < r.end:
        sub, size = r.byte(), r.u32()
        end = r.pos + size
        if sub == 8:  # WASM_SYMBOL_TABLE
            for _ in range(r.u32()):
                kind, flags = r.byte(), r.u32()
                if kind == 1:  # data: name, then where it is if defined
                    r.name()
                    if not flags & 0x10:
                        r.u32(), r.u32(), r.u32()
                elif kind == 3:  # section
                    r.u32()
                else:  # function, global, tag, table: an index, and a name unless undefined and unnamed
                    index = r.u32()
                    if not flags & 0x10 or flags & 0x40:
                        name = r.name()
                        if kind == 0 and not flags & 0x10:
                            mod.function_names.setdefault(index, name)
        r.pos = end


def parse_wasm(data: bytes) -> WasmModule:
    """Parse the sections mewe needs; raises MeweError on anything that is not a wasm module."""
    if not_a_module(data):
        raise MeweError(not_a_module(data))
    mod = WasmModule()
    r = _Reader(data, 8)
    while r.pos < r.end:
        sid, size = r.byte(), r.u32()
        end = r.pos + size
        sec = _Reader(data, r.pos, end)
        if sid == IMPORT:
            for _ in range(sec.u32()):
                _import(sec, mod)
        elif sid == EXPORT:
            for _ in range(sec.u32()):
                mod.exports.append((sec.name(), sec.byte(), sec.u32()))
        elif sid == CODE:
            for _ in range(sec.u32()):
                n = sec.u32()
                mod.bodies.append(sec.bytes(n))
        elif sid == CUSTOM:
            name = sec.name()
            mod.custom_sections.append(name)
            if name == "name":
                _names(sec, mod)
            elif name == "linking":
                _symbols(sec, mod)
        r.pos = end
    return mod


def strip_debug(data: bytes) -> bytes:
    """`data` without DWARF custom sections (.debug_*); the name section and all code stay.

    wasm-ld through zig can only strip everything, names included, so this is done here.
    """
    return strip_custom_sections(data, lambda name: name.startswith(".debug"))


def _map_sections(data: bytes, section) -> bytes:
    """The module `data` with each section replaced by `section(id, payload start, end)`: the
    bytes to write in its place (a whole section, with its header), or None to keep it."""
    if not_a_module(data):
        raise MeweError(not_a_module(data))
    out = bytearray(MAGIC)
    r = _Reader(data, 8)
    while r.pos < r.end:
        start = r.pos
        sid, size = r.byte(), r.u32()
        end = r.pos + size
        replaced = section(sid, r.pos, end)
        out += data[start:end] if replaced is None else replaced
        r.pos = end
    return bytes(out)


def strip_custom_sections(data: bytes, drop) -> bytes:
    """`data` without the custom sections whose name `drop(name)` is true."""
    return _map_sections(data, lambda sid, start, end: b"" if sid == CUSTOM and drop(_Reader(data, start, end).name())
                         else None)


def rename_import(data: bytes, old: tuple[str, str], new: tuple[str, str]) -> bytes:
    """`data` with the import `old` (module, field) renamed `new`; everything else byte for byte."""
    def imports(sid: int, start: int, end: int) -> bytes | None:
        if sid != IMPORT:
            return None
        sec = _Reader(data, start, end)
        count = sec.u32()
        body = bytearray(_leb(count))
        for _ in range(count):
            entry = sec.pos
            names = (sec.name(), sec.name())
            desc = sec.pos
            _import_desc(sec)
            if names != old:
                body += data[entry:sec.pos]
                continue
            for part in new:
                encoded = part.encode()
                body += _leb(len(encoded)) + encoded
            body += data[desc:sec.pos]
        return bytes([IMPORT]) + _leb(len(body)) + body

    return _map_sections(data, imports)


def _leb(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def add_custom_section(data: bytes, name: str, payload: bytes) -> bytes:
    """`data` with a custom section `name` appended (custom sections may come last)."""
    encoded = name.encode()
    body = _leb(len(encoded)) + encoded + payload
    return data + bytes([CUSTOM]) + _leb(len(body)) + body


def custom_section(data: bytes, name: str) -> bytes | None:
    """The payload of the first custom section called `name`, if any."""
    r = _Reader(data, 8)
    while r.pos < r.end:
        sid, size = r.byte(), r.u32()
        end = r.pos + size
        if sid == CUSTOM:
            sec = _Reader(data, r.pos, end)
            if sec.name() == name:
                return data[sec.pos:end]
        r.pos = end
    return None


def dispatch_table(data: bytes) -> list[Dispatcher] | None:
    """The dispatchers a multivariant module lists in its DISPATCH_SECTION, or None if it has none."""
    import json

    payload = custom_section(data, DISPATCH_SECTION)
    return None if payload is None else [Dispatcher(*entry) for entry in json.loads(payload)]
