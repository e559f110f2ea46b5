"""Preservation: do a build's variants still differ in the code that runs?

Two levels. In the final wasm, each body `mewe.K.f` is compared, byte for byte, with the
original `mewe.0.f` and with every earlier body. After Cranelift (wasmtime's compiler), the
machine code of each body is compared the same way, once call and data addresses are
replaced by what they point to (the same code at another address is the same code).
A variant counts as preserved at a level when it differs from all bodies before it.
"""

from __future__ import annotations

import bisect
import functools
import io
import json
import platform
import re
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from mewe.errors import MeweError
from mewe.linker import body_name
from mewe.types import Manifest
from mewe.wasm import DISPATCH_SECTION, dispatch_table, parse_wasm


@dataclass
class BodyPreservation:
    index: int  # 0 is the original
    passes: list[str]
    wasm_bytes: int
    wasm_distinct: bool  # differs from every earlier body in the final wasm
    native_distinct: bool | None  # ... in Cranelift's machine code (None: not measured)
    cost: float | None = None  # the build's cost estimate relative to the original's (None: not in the manifest)


@dataclass
class FunctionPreservation:
    name: str
    bodies: list[BodyPreservation]


@dataclass
class Preservation:
    module: str
    functions: list[FunctionPreservation] = field(default_factory=list)

    def variants(self) -> list[BodyPreservation]:
        return [b for f in self.functions for b in f.bodies if b.index > 0]

    def rates(self) -> dict[str, dict]:
        """Per pass (a variant counts for every pass that made it) and overall."""
        groups: dict[str, list[BodyPreservation]] = {"overall": self.variants()}
        for body in self.variants():
            for name in dict.fromkeys(body.passes):
                groups.setdefault(name, []).append(body)
        return {name: _rate(bodies) for name, bodies in groups.items()}

    def to_json(self) -> str:
        rates = self.rates()
        data = {"module": self.module, "preservation": rates["overall"]["wasm"],
                "native_preservation": rates["overall"]["native"], "rates": rates,
                "functions": [asdict(f) for f in self.functions]}
        return json.dumps(data, indent=1) + "\n"

    HEADER = ("pass", "variants", "distinct in wasm", "distinct after Cranelift", "mean cost")

    def _rows(self) -> list[tuple[str, ...]]:
        rows = []
        for name, r in sorted(self.rates().items(), key=lambda kv: (kv[0] == "overall", kv[0])):
            native = "—" if r["native"] is None else f"{r['native_distinct']} ({r['native']:.1%})"
            cost = "—" if r["cost"] is None else f"{r['cost']:.2f}x"
            rows.append((name, str(r["variants"]), f"{r['wasm_distinct']} ({r['wasm']:.1%})", native, cost))
        return rows

    def table(self) -> str:
        """Aligned plain text, for a terminal. Passes are stacked (a variant may come from two or
        three), so the pass rows add up to more than `overall`."""
        rows = [self.HEADER, *self._rows()]
        widths = [max(len(row[i]) for row in rows) for i in range(len(self.HEADER))]
        lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
                 for row in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        lines.insert(len(lines) - 1, "  ".join("-" * w for w in widths))
        return "\n".join(line.rstrip() for line in lines)

    def markdown(self) -> str:
        """The same table in Markdown, for documents."""
        rows = ["| " + " | ".join(self.HEADER) + " |", "|---|---|---|---|---|"]
        for row in self._rows():
            label = f"**{row[0]}**" if row[0] == "overall" else row[0]
            rows.append("| " + " | ".join((label, *row[1:])) + " |")
        return "\n".join(rows)


def _rate(bodies: list[BodyPreservation]) -> dict:
    n = len(bodies)
    wasm = sum(b.wasm_distinct for b in bodies)
    measured = [b for b in bodies if b.native_distinct is not None]
    native = sum(bool(b.native_distinct) for b in measured)
    costs = [b.cost for b in bodies if b.cost is not None]
    return {"variants": n, "wasm_distinct": wasm, "wasm": wasm / n if n else 1.0,
            "cost": sum(costs) / len(costs) if costs else None,
            "native_distinct": native if measured else None,
            "native": (native / len(measured) if measured else None) if n else 1.0}


def _distinct_flags(codes: list[object]) -> list[bool]:
    """For each body, whether it differs from all bodies before it (the original is always 'distinct')."""
    return [all(code != earlier for earlier in codes[:k]) for k, code in enumerate(codes)]


def preservation(module: str | Path, manifest: str | Path | None = None, *, native: bool = True) -> Preservation:
    """Measure how many variants of a multivariant module survive codegen, at both levels."""
    path = Path(module)
    if not path.is_file():
        raise MeweError(f"{path}: no such file")
    data = path.read_bytes()
    try:
        wasm = parse_wasm(data)
    except MeweError as exc:  # name the file: the parser knows only bytes
        raise MeweError(f"{path}: {exc}") from None
    dispatchers = dispatch_table(data)
    if dispatchers is None:
        raise MeweError(f"{path}: not a multivariant module (no {DISPATCH_SECTION} section); build it with --variants N")
    manifest_path = Path(manifest) if manifest else path.with_name(path.stem + ".manifest.json")
    passes: dict[str, list[list[str]]] = {}
    costs: dict[str, list[int]] = {}
    if manifest_path.is_file():
        functions = Manifest.from_json(manifest_path.read_text()).functions
        passes = {f.name: f.passes for f in functions}
        costs = {f.name: f.costs for f in functions}
    elif manifest:
        raise MeweError(f"{manifest_path}: no such file")

    code = wasm.code_by_name()
    machine = native_code(data) if native else {}
    report = Preservation(path.name)
    for name, count, _ in dispatchers:
        names = [body_name(name, k) for k in range(count)]
        wasm_flags = _distinct_flags([code.get(n) for n in names])
        native_flags = _distinct_flags([machine.get(n) for n in names]) if machine else [None] * count
        body_passes = passes.get(name, [[] for _ in names])
        cost = costs.get(name, [])
        relative = [c / cost[0] for c in cost] if len(cost) == count and cost[0] else [None] * count
        report.functions.append(FunctionPreservation(name, [
            BodyPreservation(k, list(body_passes[k]) if k < len(body_passes) else [], len(code.get(n, b"")),
                             wasm_flags[k], native_flags[k], relative[k])
            for k, n in enumerate(names)
        ]))
    return report


SYMBOL = re.compile(r"^wasm\[0\]::function\[(\d+)\]::")
RIP_RELATIVE = re.compile(r"\[rip ([+-]) (0x[0-9a-f]+|[0-9]+)\]")
IMMEDIATE = re.compile(r"^(0x[0-9a-f]+|[0-9]+)$")


def _function_symbols(elf) -> list[tuple[str, int, int]]:
    """(name, address, size) of every function symbol of a little-endian ELF64 object, read
    straight from its symbol table (elftools' per-symbol parsing takes ~0.1 ms a symbol)."""
    symtab = elf.get_section_by_name(".symtab")
    strings = elf.get_section(symtab["sh_link"]).data()
    out = []
    for st_name, st_info, _, _, st_value, st_size in struct.iter_unpack("<IBBHQQ", symtab.data()):
        if st_info & 0xF == 2:  # STT_FUNC
            out.append((strings[st_name:strings.index(b"\0", st_name)].decode("utf-8", "replace"), st_value, st_size))
    return out


def native_code(wasm_bytes: bytes, wanted: Callable[[str], bool] | None = None) -> dict[str, tuple[str, ...]]:
    """Each function's Cranelift machine code (only those whose name `wanted` accepts, if
    given), disassembled, with addresses made symbolic.

    Only x86-64 is decoded; elsewhere this returns {} and the native level is not measured.
    """
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return {}
    import wasmtime
    from elftools.elf.elffile import ELFFile

    from mewe.runtime.host import engine_config

    engine = wasmtime.Engine(engine_config())
    try:
        elf = ELFFile(io.BytesIO(bytes(wasmtime.Module(engine, wasm_bytes).serialize())))
    except wasmtime.WasmtimeError as exc:
        raise MeweError(f"wasmtime cannot compile the module: {str(exc).splitlines()[0]}") from None
    text = elf.get_section_by_name(".text")
    text_data, text_addr = text.data(), text["sh_addr"]
    # Named by index through the name section: wasmtime's symbols drop suffixes such as `.580`
    # (distinct functions rustc's LTO renamed) and replace spaces.
    names = parse_wasm(wasm_bytes).function_names
    funcs = sorted((value, size, names.get(int(m.group(1)), name)) for name, value, size in _function_symbols(elf)
                   if (m := SYMBOL.match(name)))
    starts = [start for start, _, _ in funcs]

    def where(target: int, lo: int, hi: int) -> str:
        if lo <= target < hi:
            return f"L{target - lo}"
        i = bisect.bisect_right(starts, target) - 1
        if i >= 0 and funcs[i][0] <= target < funcs[i][0] + funcs[i][1]:
            return f"{funcs[i][2]}+{target - funcs[i][0]}"
        return "external"

    out: dict[str, tuple[str, ...]] = {}
    for start, size, name in funcs:
        if wanted is not None and not wanted(name):
            continue
        body = text_data[start - text_addr:start - text_addr + size]
        out[name] = disassemble(body, start, lambda target, lo=start, hi=start + size: where(target, lo, hi))
    return out


@functools.lru_cache(maxsize=1)
def _decoder():
    import capstone

    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    md.skipdata = True
    return md


def disassemble(code: bytes, address: int, where: Callable[[int], str]) -> tuple[str, ...]:
    """x86-64 `code` at `address` as instruction lines, branch and call targets and rip-relative
    addresses named by `where` (L<offset> inside, symbol+offset outside). Bytes that are no
    instruction become `.byte` lines and decoding goes on: Cranelift puts a br_table's jump table
    among the instructions, and stopping there would hide all that follows (bodies behind an
    inlined dispatch would look the same)."""
    md = _decoder()
    # The lite decoder gives mnemonics and operand text only (several times faster than
    # capstone's detail mode): targets are read from the operand text.
    lines = []
    for at, length, mnemonic, ops in md.disasm_lite(code, address):
        if (mnemonic == "call" or mnemonic.startswith(("j", "loop"))) and IMMEDIATE.match(ops):
            ops = where(int(ops, 0))
        elif "rip" in ops and (m := RIP_RELATIVE.search(ops)):
            target = at + length + int(m.group(2), 0) * (1 if m.group(1) == "+" else -1)
            ops = RIP_RELATIVE.sub(f"[{where(target)}]", ops)
        lines.append(f"{mnemonic} {ops}")
    return tuple(lines)
