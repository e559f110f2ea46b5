"""The multivariant linker: every diversified function becomes a dispatcher over its variants.

For a function `f` with variants, the original body becomes the internal `mewe.0.f`, each
variant `mewe.K.f`, and `f` itself -- same name, signature, linkage and attributes -- a
dispatcher that asks the runtime's discriminator for an index and forwards its arguments to
that body. Because `f` keeps its name, every use of it (direct calls, function pointers in
tables and initialisers, exports, aliases) reaches the dispatcher.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from dataclasses import dataclass, field, replace
from typing import Mapping, Sequence

import llvmlite.binding as llvm

from mewe.errors import MeweError
from mewe.llvmir import function_cost, instruction_count, llvm_error, new_context, parse_module, quote_name, unquote_name
from mewe.types import FunctionReport, IRModule, MultivariantOptions, Rerandomize, Variant

from .irtext import (NAME, PLACEMENT, Definition, Header, ModuleText, Param, Unsupported, abi_only, parse_header,
                     retarget_calls, tokens)

CHOOSE = "__mewe_choose"
TRACE = "__mewe_trace"
REDRAW = "__mewe_redraw"
MAX_BODIES = 256  # a slot holds the variant in 8 bits
# Function attributes a dispatcher must not keep: it writes the discriminator's state.
MEMORY_ATTRS = re.compile(r"^(memory\(.*\)|readnone|readonly|writeonly|argmemonly|inaccessiblememonly|"
                          r"inaccessiblemem_or_argmemonly|speculatable)$")
FORWARD_BY_COPY = ("byval", "inalloca", "preallocated")  # wasm cannot tail-call with these
# A `tail call` passing a byval copy: with the tail-call feature on, LLVM's wasm backend makes it
# a return_call whose copy sits in the frame it just popped.
TAIL_CALL_BY_COPY = re.compile(r"\btail call\b(?=.*\b(?:byval|inalloca|preallocated)\()")


def body_name(function: str, index: int) -> str:
    """The K-th body's symbol. The marker leads so that the name never looks mangled: wasm-ld
    demangles C++ and Rust names (`_Z...`) in the name section, where variants are found."""
    return f"mewe.{index}.{function}"


def unit_dispatch_id(unit: str, function: str) -> int:
    """A dispatcher's trace id under separate compilation: units are numbered nowhere, so the id
    is a hash of the unit and function names (31 bits; the final link checks for collisions)."""
    return zlib.crc32(f"{unit}\0{function}".encode()) & 0x7FFFFFFF


@dataclass
class _Plan:
    """A function to dispatch: its definition and its distinct bodies (the original first)."""

    definition: Definition
    bodies: list[tuple[Header, list[str], tuple[str, ...]]]  # header, body lines, passes
    report: FunctionReport
    variants: list[Variant]  # the distinct variants behind bodies[1:]
    dispatch_id: int = -1
    inline: bool = False  # the dispatch sequence is inlined into direct callers
    merge: bool = False  # the bodies too: tiny leaves, inlined where they are dispatched
    keep: bool = False  # the bodies stay in the binary even where nothing calls them
    keys: list[str] = field(default_factory=list)  # each body's canonical text (see _canonical)


def _returns_twice(mt: ModuleText) -> set[str]:
    """Functions declared or defined with returns_twice (setjmp and friends), as spelled."""
    names = set()
    for line in mt.lines:
        if line.startswith(("declare ", "define ")):
            m = re.search(rf"({NAME})\(.*?(#\d+)", line)
            if m and "returns_twice" in mt.attribute_groups.get(m.group(2), "").split():
                names.add(m.group(1))
    return names


def _block_addressed(mt: ModuleText) -> set[str]:
    """Functions whose block addresses are taken (one scan of the module)."""
    return {unquote_name(m) for line in mt.lines if "blockaddress(" in line
            for m in re.findall(rf"blockaddress\(({NAME}),", line)}


_EH_RE = re.compile(r"^\s*(?:%[-\w$.\"]+ = )?(?:invoke|landingpad|catchswitch|catchpad|cleanuppad|resume)\b", re.M)


def _skip_reason(name: str, mt: ModuleText, twice: set[str], addressed: set[str]) -> str:
    if name in mt.header_errors:
        return mt.header_errors[name]
    d = mt.definitions[name]
    h = d.header
    attrs = _attributes(h, mt)
    body = "\n".join(d.body(mt.lines))
    if h.varargs and any("@llvm.va_start" in line and not _VA_START_RE.match(line) for line in body.split("\n")):
        return "varargs: a va_start of a form mewe does not rewrite"
    if "naked" in attrs:
        return "naked"
    if "returns_twice" in attrs:
        return "returns_twice"
    if "available_externally" in h.prefix:
        return "available_externally"
    if any(t in ("prefix", "prologue") for t in h.suffix):
        return "prefix or prologue data"
    if "musttail call" in body:
        return "contains a musttail call"
    if "personality" in h.suffix or _EH_RE.search(body):
        # Unwinding needs an EH runtime that wasi-libc lacks, so no variant of this could be run
        # against its original here: keep the one body rather than dispatch untested code.
        return "uses exception handling (invoke or EH pads)"
    if any(f"{callee}(" in body for callee in twice):
        return "calls a returns_twice function (setjmp)"
    if name in addressed:
        return "its block addresses are taken"
    return ""


def _attributes(header: Header, mt: ModuleText) -> list[str]:
    return tokens(mt.attribute_groups.get(header.attr_group or "", "")) + header.suffix


# A call to anything but an intrinsic (a word match, so `%call = add` counts too: when in doubt, not a leaf).
_CALL_RE = re.compile(r"\b(?:call|invoke|callbr)\b")
# A variadic function's bodies take the dispatcher's va_list as one more parameter, and each
# va_start of theirs becomes a va_copy of it: the same arguments, from the first one on.
VA_LIST = "%mewe.va"
_VA_START_RE = re.compile(r"^(\s*)(?:tail |notail )?call void @llvm\.va_start(?:\.p0)?\((ptr [^()]*)\)(.*)$")
# A stack slot, once inlined, gives every caller a frame on every call, whichever body runs.
_ALLOCA_RE = re.compile(r"= alloca\b")
KEPT = "llvm.used"  # merged bodies stay in the binary (wasm-ld keeps them) for comparison and inspection


def _mergeable(plan: _Plan, limit: int) -> bool:
    """Whether every body of `plan` is a leaf of at most `limit` instructions: inlined into the
    dispatch, the call to a body goes away and the code grows by little."""
    return all(instruction_count(body) <= limit and
               not any(_CALL_RE.search(line) and "@llvm." not in line or _ALLOCA_RE.search(line) for line in body)
               for _, body, _ in plan.bodies)


def _body_suffix(header: Header, mt: ModuleText, merge: bool, keep: bool) -> list[str]:
    """A body's header suffix: the original's; for a kept body (no longer local) its attribute
    group inlined without an export name (the export is the dispatcher's); for a merged one
    also `alwaysinline` instead of `noinline` (the source's noinline was about the function,
    which still is one: its dispatcher)."""
    suffix = _without_comdat(header.suffix)
    if not (merge or keep):
        return suffix
    out = []
    for tok in suffix:
        group = tokens(mt.attribute_groups.get(tok, "")) if tok == header.attr_group else [tok]
        out += [a for a in group if not (merge and a == "noinline") and not a.startswith('"wasm-export-name"')]
    return out + (["alwaysinline"] if merge else [])


USED_RE = re.compile(r'@llvm\.used = appending global \[\d+ x ptr\] \[ptr (.*)\], section "llvm.metadata"')


def _used_entries(lines: list[str]) -> list[str] | None:
    """The symbols in the module's @llvm.used, as spelled; None if it has a form not handled here."""
    for line in lines:
        if line.startswith("@llvm.used "):
            m = USED_RE.fullmatch(line)
            return m.group(1).split(", ptr ") if m else None
    return []


def _keep_used(lines: list[str], names: list[str]) -> list[str]:
    """`lines` with `names` added to @llvm.used (whose form `_used_entries` read)."""
    entries = (_used_entries(lines) or []) + [quote_name(n) for n in names]
    kept = f'@{KEPT} = appending global [{len(entries)} x ptr] [{", ".join("ptr " + e for e in entries)}], section "llvm.metadata"'
    return [line for line in lines if not line.startswith("@llvm.used ")] + [kept]


def _internal(header: Header) -> list[str]:
    return ["internal", *(t for t in header.prefix if t not in PLACEMENT)]


def _without_comdat(suffix: list[str]) -> list[str]:
    return [t for t in suffix if not t.startswith("comdat")]


def _dispatcher_attrs(header: Header, mt: ModuleText, tail_calls: bool) -> list[str]:
    """The original's suffix with its attribute group inlined, minus memory-effect attributes."""
    out = []
    for tok in header.suffix:
        if tok == header.attr_group:
            for attr in tokens(mt.attribute_groups.get(tok, "")):
                if not MEMORY_ATTRS.match(attr):
                    out.append(_tail_call_feature(attr) if tail_calls else attr)
        elif not MEMORY_ATTRS.match(tok):
            out.append(tok)
    return out


def _tail_call_feature(attr: str) -> str:
    return attr.replace("-tail-call", "+tail-call") if attr.startswith('"target-features"=') else attr


def _forward_call(header: Header, callee: str, tail_calls: bool, result: str, merge: bool = False,
                  out_of_line: bool = False) -> list[str]:
    """`musttail call` of `callee` with the dispatcher's own arguments, and the ret (a plain
    call for a body to be inlined; with `out_of_line`, a call that is never inlined)."""
    by_copy = any(a.split("(")[0] in FORWARD_BY_COPY for p in header.params for a in p.attrs)
    kind = "call" if merge or by_copy else "musttail call" if tail_calls else "tail call"
    args = ", ".join(" ".join([p.type, *p.abi_attrs(), p.name]) for p in header.params)
    ret_abi = " ".join(abi_only(header.ret_attrs))
    pieces = [kind, header.cconv, ret_abi, header.function_type, f"{callee}({args})", "noinline" if out_of_line else ""]
    call = " ".join(p for p in pieces if p)
    if header.ret == "void":
        return [f"  {call}", "  ret void"]
    return [f"  {result} = {call}", f"  ret {header.ret} {result}"]


def _va_body_header(header: Header) -> Header:
    """A variadic function's body: its fixed parameters and the dispatcher's va_list."""
    return replace(header, params=[*header.params, Param("ptr", [], VA_LIST)], varargs=False)


def _va_body(body: list[str]) -> list[str]:
    """A variadic function's body lines, each va_start a va_copy of the dispatcher's list."""
    return [_VA_START_RE.sub(rf"\1call void @llvm.va_copy.p0(\2, ptr {VA_LIST})\3", line) for line in body]


def _forward_va_call(header: Header, callee: str, result: str) -> list[str]:
    """The call of a variadic function's body with the dispatcher's va_list, which is ended
    after it (not a tail call: the body reads the dispatcher's frame)."""
    args = ", ".join([" ".join([p.type, *p.abi_attrs(), p.name]) for p in header.params] + ["ptr %mewe.ap"])
    pieces = ["call", header.cconv, " ".join(abi_only(header.ret_attrs)), _va_body_header(header).function_type,
              f"{callee}({args})"]
    call = " ".join(p for p in pieces if p)
    end = "  call void @llvm.va_end.p0(ptr %mewe.ap)"
    if header.ret == "void":
        return [f"  {call}", end, "  ret void"]
    return [f"  {result} = {call}", end, f"  ret {header.ret} {result}"]


def _dispatcher(plan: _Plan, mt: ModuleText, options: MultivariantOptions,
                inlined_copy: bool = False) -> tuple[list[str], list[str]]:
    """The dispatcher's lines, and any module-level lines it needs (its slot, the table); with
    `inlined_copy`, as the internal function only callers inline (see `link_variants`)."""
    header = plan.definition.header
    n = len(plan.bodies)
    attrs = _dispatcher_attrs(header, mt, options.tail_calls)
    if plan.inline:  # callers branch on the variant themselves: no dispatcher frame per call
        attrs = [a for a in attrs if a != "noinline"] + ["alwaysinline"]
    extra: list[str] = []
    rendered = (header.render(name=_inlined_name(header.name), prefix=_internal(header),
                              suffix=[a for a in _without_comdat(attrs) if not a.startswith('"wasm-export-name"')])
                if inlined_copy else header.render(suffix=attrs))
    lines = [rendered, "mewe.dispatch:"]
    if header.varargs:
        lines += ["  %mewe.ap = alloca ptr, align 4", "  call void @llvm.va_start.p0(ptr %mewe.ap)"]
    if options.rerandomize.kind == "call":
        lines.append(f"  %mewe.k = call i32 @{CHOOSE}(i32 {n})")
    else:
        slot = quote_name(f"{header.name}.mewe.slot")
        extra.append(f"{slot} = internal global {{ i64, ptr, i32 }} zeroinitializer, align 8")
        if header.varargs:
            lines += _slot_read(slot, n, options.rerandomize)
        else:  # a stale slot is re-drawn out of line, where the call is dispatched too
            redraw = quote_name(f"{header.name}.mewe.redraw")
            lines += _slot_check(slot, options.rerandomize)
            lines += _forward_call(header, redraw, options.tail_calls, "%mewe.redrawn")
            lines += ["mewe.pick:", "  %mewe.k64 = and i64 %mewe.held, 255", "  %mewe.k = trunc i64 %mewe.k64 to i32"]
            extra += _redraw_dispatcher(plan, mt, options, slot, redraw, extra)
    lines += _pick(plan, options, n, extra)
    lines.append("}")
    return lines, extra


def _redraw_dispatcher(plan: _Plan, mt: ModuleText, options: MultivariantOptions, slot: str, name: str,
                       extra: list[str]) -> list[str]:
    """The dispatch of a call that found its slot stale: re-draw it, then call the body drawn.
    Out of line and cold, so that the common path calls nothing but the body: a dispatcher of
    a leaf body needs no saved registers, and one inlined into a caller keeps nothing of the
    caller's alive across a call to the runtime."""
    header = plan.definition.header
    period = _redraw_period(options.rerandomize)
    attrs = [a for a in _without_comdat(_dispatcher_attrs(header, mt, options.tail_calls))  # the export is the dispatcher
             if a not in ("alwaysinline", "inlinehint", "noinline", "cold") and not a.startswith('"wasm-export-name"')]
    attrs += ["noinline", "cold"]
    lines = [header.render(name=unquote_name(name), prefix=_internal(header), suffix=attrs), "mewe.dispatch:",
             f"  %mewe.slot = call i64 @{REDRAW}(ptr {slot}, i32 {len(plan.bodies)}, i32 {period})",
             "  %mewe.k64 = and i64 %mewe.slot, 255", "  %mewe.k = trunc i64 %mewe.k64 to i32"]
    return [""] + lines + _pick(plan, options, len(plan.bodies), extra, cold=True) + ["}"]


def _pick(plan: _Plan, options: MultivariantOptions, n: int, extra: list[str], cold: bool = False) -> list[str]:
    """From variant index %mewe.k on: the trace, then the call of that body (and the ret); a
    table it needs goes on `extra`. In a `cold` dispatcher merged bodies are called, not
    inlined: a third less code to generate for them, on a path taken once per re-draw."""
    header = plan.definition.header
    lines = []
    if options.trace:
        lines.append(f"  call void @{TRACE}(i32 {plan.dispatch_id}, i32 %mewe.k)")
    if options.dispatch == "table":
        table = quote_name(f"{header.name}.mewe.table")
        entries = ", ".join(f"ptr {quote_name(body_name(header.name, k))}" for k in range(n))
        definition = f"{table} = internal unnamed_addr constant [{n} x ptr] [{entries}]"
        if definition not in extra:  # the re-drawing dispatcher reads it too
            extra.append(definition)
        lines += [f"  %mewe.entry = getelementptr inbounds [{n} x ptr], ptr {table}, i32 0, i32 %mewe.k",
                  "  %mewe.target = load ptr, ptr %mewe.entry, align 4"]
        lines += (_forward_va_call(header, "%mewe.target", "%mewe.result") if header.varargs else
                  _forward_call(header, "%mewe.target", options.tail_calls, "%mewe.result"))
    else:
        cases = [f"    i32 {k}, label %mewe.v{k}" for k in range(1, n)]
        lines += ["  switch i32 %mewe.k, label %mewe.v0 [", *cases, "  ]"]
        for k in range(n):
            lines.append(f"mewe.v{k}:")
            callee = quote_name(body_name(header.name, k))
            lines += (_forward_va_call(header, callee, f"%mewe.r{k}") if header.varargs else
                      _forward_call(header, callee, options.tail_calls, f"%mewe.r{k}", plan.merge and not cold,
                                    out_of_line=plan.merge and cold))
    return lines


def _redraw_period(mode: Rerandomize) -> int:
    """The period __mewe_redraw takes: N under every:N, 0 (the rest of the instance) under request."""
    return mode.period if mode.kind == "every" else 0


def _slot_check(slot: str, mode: Rerandomize) -> list[str]:
    """Load the function's slot (counting the call under every:N) and branch to mewe.pick
    when it holds a variant, else fall into mewe.draw."""
    lines = [f"  %mewe.held = load i64, ptr {slot}, align 8",
             "  %mewe.spent = icmp ult i64 %mewe.held, 256"]
    if mode.kind == "every":
        lines += ["  %mewe.left = sub i64 %mewe.held, 256",
                  f"  store i64 %mewe.left, ptr {slot}, align 8"]
    return lines + ["  br i1 %mewe.spent, label %mewe.draw, label %mewe.pick, !prof !{!\"branch_weights\", i32 1, i32 1000000}",
                    "mewe.draw:"]


def _slot_read(slot: str, n: int, mode: Rerandomize) -> list[str]:
    """The variant held in the function's slot, re-drawn by the runtime when stale (see
    __mewe_redraw in discriminator.c), for dispatchers that cannot forward their call to a
    re-drawing one (variadic functions): between re-draws, a branch the CPU predicts."""
    return _slot_check(slot, mode) + [
        f"  %mewe.drawn = call i64 @{REDRAW}(ptr {slot}, i32 {n}, i32 {_redraw_period(mode)})",
        "  br label %mewe.pick",
        "mewe.pick:",
        "  %mewe.slot = phi i64 [ %mewe.held, %mewe.dispatch ], [ %mewe.drawn, %mewe.draw ]",
        "  %mewe.k64 = and i64 %mewe.slot, 255",
        "  %mewe.k = trunc i64 %mewe.k64 to i32",
    ]


def _plan(name: str, mt: ModuleText, variants: Sequence[Variant]) -> _Plan:
    d = mt.definitions[name]
    original_body = d.body(mt.lines)
    bodies = [(d.header, original_body, ())]
    keys = [_canonical(d.header, original_body)]
    seen = set(keys)
    used: list[Variant] = []
    dropped = 0
    drops = [f"{','.join(v.passes)}: {v.error}" for v in variants if v.error]
    for v in variants:
        if v.error:
            continue
        lines = v.ir.strip("\n").split("\n")
        try:
            header = parse_header(lines[0])
        except Unsupported as why:
            raise MeweError(f"variant of {name} from passes {','.join(v.passes)}: {why}") from None
        if header.name != name or header.function_type != d.header.function_type:
            raise MeweError(f"a variant given for {name} defines {header.name} with type {header.function_type}")
        key = _canonical(header, lines[1:])
        if key in seen:
            dropped += 1
            continue
        seen.add(key)
        keys.append(key)
        bodies.append((header, lines[1:], tuple(v.passes)))
        used.append(v)
    report = FunctionReport(name, "dispatched", variants=len(bodies), dropped=dropped, drops=drops,
                            passes=[list(b[2]) for b in bodies])
    return _Plan(d, bodies, report, used, keys=keys)


_COMMENT_RE = re.compile(r"\s*;[^\"]*$")


def _canonical(header: Header, body: list[str]) -> str:
    """A body's text without comments and blank lines: variants equal in this are duplicates."""
    lines = ((_COMMENT_RE.sub("", line) if ";" in line else line).rstrip() for line in body)
    return header.render(name="mewe.canonical") + "\n" + "\n".join(line for line in lines if line)


def _rewrite(mt: ModuleText, plans: list[_Plan], options: MultivariantOptions, compare: bool = False) -> str:
    """The module text with each planned function replaced by its bodies and dispatcher.
    Kept bodies (merged ones, every one in a module made to compare them) stay in the linked
    binary (hidden and in @llvm.used: wasm-ld drops unused local symbols whatever their
    flags), where variants are compared and inspected. With `compare`, see `link_variants`."""
    replaced = {p.definition.start: p for p in plans}
    # In a module to compare in, bodies call the dispatchers' inlined copies (see link_variants).
    inlined = {p.definition.header.name: _inlined_name(p.definition.header.name) for p in plans if compare and p.inline}
    out: list[str] = []
    extra: list[str] = []
    kept = [body_name(p.definition.header.name, k) for p in plans if p.keep for k in range(len(p.bodies))]
    i = 0
    while i < len(mt.lines):
        plan = replaced.get(i)
        if plan is None:
            line = mt.lines[i]
            if line.startswith("attributes #"):
                line = _strip_memory_attrs(line, options.tail_calls)
            out.append(line)
            i += 1
            continue
        for k, (header, body, _) in enumerate(plan.bodies):
            prefix = _internal(header)
            if plan.keep:
                prefix[0] = "hidden"
            if header.varargs:
                header, body = _va_body_header(header), _va_body(body)
            elif options.self_calls == "stay":
                body = retarget_calls(body, {header.name: body_name(header.name, k)})
            out.append(header.render(name=body_name(header.name, k), prefix=prefix,
                                     suffix=_body_suffix(header, mt, plan.merge, plan.keep)))
            out += retarget_calls(body, inlined) if inlined else body
            out.append("")
        lines, module_lines = _dispatcher(plan, mt, options, inlined_copy=compare and plan.inline)
        if compare and plan.inline:  # see link_variants
            header = plan.definition.header
            stub = [a for a in _dispatcher_attrs(header, mt, options.tail_calls) if a != "alwaysinline"]
            lines = [header.render(suffix=stub), "mewe.dispatch:",
                     *_forward_call(header, quote_name(body_name(header.name, 0)), options.tail_calls, "%mewe.r"),
                     "}", ""] + lines
        out += lines
        extra += module_lines
        i = plan.definition.end + 1
    if options.tail_calls:
        out = [TAIL_CALL_BY_COPY.sub("call", line) if "tail call" in line else line for line in out]
    if plans:
        out.append(f"declare i32 @{CHOOSE}(i32)")
        if options.trace:
            out.append(f"declare void @{TRACE}(i32, i32)")
        if options.rerandomize.kind != "call":
            out.append(f"declare i64 @{REDRAW}(ptr, i32, i32)")
    if any(p.definition.header.varargs for p in plans):  # the intrinsics the dispatchers and bodies call
        for intrinsic, params in (("va_start", "ptr"), ("va_end", "ptr"), ("va_copy", "ptr, ptr")):
            if not any(line.startswith(f"declare void @llvm.{intrinsic}.p0(") for line in mt.lines):
                out.append(f"declare void @llvm.{intrinsic}.p0({params})")
    if kept:
        out = _keep_used(out, kept)
    return "\n".join(out + extra) + "\n"


def _inlined_name(function: str) -> str:
    """In a module to compare in, the dispatcher that callers inline (see `link_variants`)."""
    return f"{function}.mewe.inline"


def _strip_memory_attrs(line: str, tail_calls: bool) -> str:
    """Callers may have been marked memory(none) because the callee was; now calls draw random numbers."""
    key, _, rest = line.partition(" = { ")
    attrs = tokens(rest.rstrip().removesuffix("}"))
    kept = [(_tail_call_feature(a) if tail_calls else a) for a in attrs if not MEMORY_ATTRS.match(a)]
    return f"{key} = {{ {' '.join(kept)} }}"


def _parse(text: str, context: llvm.ContextRef | None = None) -> llvm.ModuleRef:
    return parse_module(text, context=context)


def unsupported(program: IRModule, options: MultivariantOptions) -> dict[str, str]:
    """The functions of `program` the linker will not dispatch, whatever their variants, and
    why (exception handling, setjmp, musttail, --max-size, ...): the build's plan, made before
    passes run so that no variants are made for them."""
    return _unsupported(_module_text(program), options)


_last_text: list[tuple[bytes, ModuleText]] = []  # a build plans and links one program up to 3 times


def _module_text(program: IRModule) -> ModuleText:
    """`program`'s text, parsed once for the last program seen (only read, never changed)."""
    digest = hashlib.sha256(program.bitcode).digest()
    if not _last_text or _last_text[0][0] != digest:
        _last_text[:] = [(digest, ModuleText.parse(str(parse_module(program.bitcode))))]
    return _last_text[0][1]


def _unsupported(mt: ModuleText, options: MultivariantOptions) -> dict[str, str]:
    twice, addressed = _returns_twice(mt), _block_addressed(mt)
    out = {}
    for name in list(mt.definitions) + list(mt.header_errors):
        reason = _skip_reason(name, mt, twice, addressed)
        instructions = instruction_count(mt.definitions[name].body(mt.lines)) if name in mt.definitions else 0
        if not reason and instructions > options.max_size:
            reason = f"larger than --max-size ({instructions} > {options.max_size} instructions)"
        if reason:
            out[name] = reason
    return out


def link_variants(
    program: IRModule,
    variants: Mapping[str, Sequence[Variant]],
    runtime: IRModule,
    options: MultivariantOptions,
    *,
    unit: str | None = None,
    compare: bool = False,
) -> tuple[IRModule, list[FunctionReport], dict[str, list[Variant]]]:
    """Merge `variants` into `program`, add a dispatcher per function, link the `runtime` in.

    Returns the multivariant module, a report per defined function of `program`, and per
    dispatched function the distinct variants behind `mewe.1.f`, `mewe.2.f`, ... in order.
    A function the linker cannot forward correctly is left as it was and reported as skipped.

    Whole-program builds number dispatchers 0, 1, ...; for a translation unit of a separate
    compilation (`unit` names it) the `runtime` is the discriminator's fast path only, made
    internal once inlined, and trace ids are `unit_dispatch_id`s.

    With `compare`, the module is one to compare the bodies' code in, not to run. Every body
    is kept in the binary and compiled as in the final module, with its callees' dispatch
    inlined (and merged) alike; only the dispatchers themselves, whose code is not compared,
    are a call of the original (callers inline an internal copy). A merged function's own
    dispatcher holds every body once more, so this about halves the code of a program of
    small functions to generate.
    """
    mt = _module_text(program)
    names = list(mt.definitions) + [n for n in mt.header_errors if n not in mt.definitions]
    skips = _unsupported(mt, options)
    can_keep = _used_entries(mt.lines) is not None
    reports: dict[str, FunctionReport] = {}
    plans: list[_Plan] = []
    for name in names:
        reason = skips.get(name, "")
        instructions = instruction_count(mt.definitions[name].body(mt.lines)) if name in mt.definitions else 0
        if not reason and not variants.get(name):
            reason = "no variants"
        if reason:
            reports[name] = FunctionReport(name, "skipped", reason, variants=1)
            continue
        plan = _plan(name, mt, variants[name])
        if len(plan.bodies) == 1:
            why = "no distinct variants" if len(plan.report.drops) < len(variants[name]) else \
                f"no valid variants: {len(plan.report.drops)} were invalid IR (see drops)"
            reports[name] = FunctionReport(name, "skipped", why, variants=1, dropped=plan.report.dropped,
                                           drops=plan.report.drops)
            continue
        header = mt.definitions[name].header
        inline = (instructions <= options.inline_dispatch and "optnone" not in _attributes(header, mt)
                  and not header.varargs)  # a function that calls va_start is never inlined
        # Not in a translation unit: there, static functions' hidden bodies could clash between
        # units, and a function inlined everywhere would vanish from the final link's manifest.
        merge = (inline and options.dispatch == "switch" and can_keep and unit is None and
                 _mergeable(plan, options.merge_bodies))
        plan.inline, plan.merge = inline, merge
        plan.report.merged = plan.merge
        plan.keep = merge or compare
        plans.append(plan)
        reports[name] = plan.report

    context = new_context()
    mod = _link_checked(mt, plans, options, reports, context, unit, compare)  # dispatcher ids follow `names`
    for plan in plans:  # before dispatchers are inlined into the bodies that call them
        known = [plan.variants[0].original_cost if plan.variants else None] + [v.cost for v in plan.variants]
        plan.report.costs = [c if c is not None else _cost(key, mod, body_name(plan.report.name, k))
                             for k, (key, c) in enumerate(zip(plan.keys, known))]
    mod.link_in(parse_module(runtime.bitcode, context=context))
    _inline_discriminator(mod)
    if unit is not None:  # every unit has its copy; the runtime archive has the shared one
        mod.get_function(CHOOSE).linkage = llvm.Linkage.internal
    mod.verify()
    used = {p.report.name: p.variants for p in plans}
    return IRModule(program.name, mod.as_bitcode()), [reports[n] for n in names], used


_costs: dict[bytes, int] = {}  # a body's canonical text (digest) -> its cost: a build links twice


def _cost(key: str, mod: llvm.ModuleRef, name: str) -> int:
    digest = hashlib.sha256(key.encode()).digest()
    if digest not in _costs:
        if len(_costs) > 1_000_000:
            _costs.clear()
        _costs[digest] = function_cost(mod.get_function(name))
    return _costs[digest]


def _link_checked(mt: ModuleText, plans: list[_Plan], options: MultivariantOptions,
                  reports: dict[str, FunctionReport], context: llvm.ContextRef, unit: str | None,
                  compare: bool = False) -> llvm.ModuleRef:
    """Parse the rewritten module; if it does not verify, find the functions at fault and skip them."""
    def number(ps: list[_Plan]) -> None:
        for i, p in enumerate(ps):
            p.dispatch_id = i if unit is None else unit_dispatch_id(unit, p.report.name)
            p.report.dispatch_id = p.dispatch_id

    number(plans)
    try:
        return _parse(_rewrite(mt, plans, options, compare), context)
    except RuntimeError:
        pass
    good = []
    for plan in plans:  # one at a time: slow, but only when something is wrong
        plan.dispatch_id = 0
        try:
            _parse(_rewrite(mt, [plan], options, compare))
            good.append(plan)
        except RuntimeError as exc:
            msg = llvm_error(exc)
            reports[plan.report.name] = FunctionReport(plan.report.name, "skipped", f"rewrite failed: {msg}", variants=1)
    number(good)
    plans[:] = good
    try:
        return _parse(_rewrite(mt, good, options, compare), context)
    except RuntimeError as exc:
        raise MeweError(f"multivariant module does not verify: {llvm_error(exc)}") from None


def _inline_discriminator(mod: llvm.ModuleRef) -> None:
    """Inline the discriminator's fast path (always_inline) into every dispatcher."""
    from .codegen import target_machine

    tm = target_machine(mod.triple, features="+tail-call")
    pm = llvm.create_new_module_pass_manager()
    pm.add_always_inliner_pass()
    pm.run(mod, llvm.create_pass_builder(tm, llvm.create_pipeline_tuning_options()))
