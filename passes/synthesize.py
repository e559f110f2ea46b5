"""`synthesize`: replace small integer expression DAGs by synthesized equivalents proven with z3.

An expression is a binop whose operands come from one or two other binops (constants and other
values are its leaves). Its *shape* (width, operators, constants, leaves renamed x0, x1, ...)
is synthesized once (in memory per process, and on disk in the passes' cache): candidates are
enumerated bottom-up over a small grammar, deduplicated by their values on sample inputs, and
completed meet-in-the-middle (a root add/sub/xor whose other operand is looked up by value);
those matching the samples are proven with z3. Poison cannot arise (the replacement carries no
nsw/nuw/exact, and never shifts by the width or more, so it is defined wherever the source is).
The work per application is bounded by counts, not a clock, so the result depends only on the seed.
"""

from __future__ import annotations

import random

from . import cache
from .framework import Pass, register
from .ir import WIDTHS, Function, Instr, int_width
from .rules import Expr, NotApplicable, const_value, emit, fold

SOURCE_OPS = frozenset("add sub mul and or xor shl lshr ashr".split())
PAIR_OPS = ("add", "sub", "and", "or", "xor")  # over any two operands
SAMPLES = 24
MAX_SITES = 3  # expressions examined per application
MAX_PROOFS = 3  # alternatives kept per shape
MAX_TRIES = 6  # candidates sent to z3 per shape
SMALL_CONST = 64  # constants up to this (and -1 - it) are common enough to synthesize for
MAX_GROWTH = 2  # operators an alternative may have beyond the source's
Z3_RLIMIT = 200_000  # z3 resource units per proof (deterministic, unlike a timeout): some 40 ms

_cache: dict[tuple, list[Expr]] = {}  # shape -> proven alternatives (leaves x0, x1, ...)


def _columns(width: int, nvars: int) -> list[list[int]]:
    """SAMPLES inputs for each of `nvars` variables: edge values (in different pairings) and random ones."""
    mask = (1 << width) - 1
    edges = [0, 1, mask, 1 << (width - 1), mask >> 1, 2, 3]
    rng = random.Random(width)
    return [(edges[i:] + edges[:i] + [rng.getrandbits(width) for _ in range(SAMPLES)])[:SAMPLES] for i in range(nvars)]


class _Lanes:
    """SAMPLES values of one width packed in one integer, 2*width bits a lane, so one Python
    integer operation evaluates an expression on every sample at once."""

    def __init__(self, width: int):
        self.width, self.lane = width, 2 * width
        self.ones = sum(1 << (self.lane * i) for i in range(SAMPLES))
        self.mask = self.ones * ((1 << width) - 1)

    def pack(self, values: list[int]) -> int:
        return sum(v << (self.lane * i) for i, v in enumerate(values))

    def const(self, c: int) -> int:
        return c * self.ones

    def op(self, op: str, a: int, b: int, c: int | None = None) -> int:
        """`op` lane-wise; mul and shifts need their right operand's constant value `c`."""
        m, w = self.mask, self.width
        if op == "add":
            return (a + b) & m
        if op == "sub":
            return (a + (m - b) + self.ones) & m
        if op == "and":
            return a & b
        if op == "or":
            return a | b
        if op == "xor":
            return a ^ b
        if op == "mul":
            return (a * c) & m
        if op == "shl":
            return (a << c) & m
        lshr = (a >> c) & m
        if op == "lshr":
            return lshr
        sign = (a >> (w - 1)) & self.ones
        return lshr | sign * (((1 << c) - 1) << (w - c))


def _canon(expr: Expr) -> Expr:
    """`expr` with the operands of commutative operators in a fixed order."""
    if not isinstance(expr, tuple):
        return expr
    op, a, b = expr[0], _canon(expr[1]), _canon(expr[2])
    if op in ("add", "mul", "and", "or", "xor") and repr(b) < repr(a):
        a, b = b, a
    return (op, a, b)


def _size(expr: Expr) -> int:
    return 1 + _size(expr[1]) + _size(expr[2]) if isinstance(expr, tuple) else 0


def _eval(expr: Expr, env: dict, width: int) -> int:
    if isinstance(expr, int):
        return expr
    if isinstance(expr, str):
        return env[expr]
    return fold(expr[0], _eval(expr[1], env, width), _eval(expr[2], env, width), width)


def enumerate_candidates(shape: Expr, width: int, nvars: int) -> list[Expr]:
    """Expressions agreeing with `shape` on the samples (not yet proven), smallest first."""
    lanes = _Lanes(width)
    names = [f"x{i}" for i in range(nvars)]
    columns = _columns(width, nvars)
    try:
        target = lanes.pack([_eval(shape, dict(zip(names, row)), width) for row in zip(*columns)])
    except NotApplicable:
        return []
    mask = (1 << width) - 1
    consts = sorted({c for c in _leaves(shape) if isinstance(c, int)} | {1, mask})
    bank: dict[int, Expr] = {}  # value on the samples -> the first (smallest) expression found
    for name, column in zip(names, columns):
        bank.setdefault(lanes.pack(column), name)
    for c in consts:
        bank.setdefault(lanes.const(c), c)
    found: list[Expr] = []
    constant = {lanes.const(c) for c in range(1 << min(width, 8))}  # (the small) constant vectors

    def add(v: int, expr: Expr, level: list) -> None:
        if v == target:
            found.append(expr)
        if v not in bank and v not in constant:
            bank[v] = expr
            level.append((v, expr))

    level0, level1, level2 = list(bank.items()), [], []
    for op in PAIR_OPS:
        for va, a in level0:
            for vb, b in level0:
                if not (isinstance(a, int) and isinstance(b, int)):
                    add(lanes.op(op, va, vb), (op, a, b), level1)
    for va, a in level0:
        for c in consts if isinstance(a, str) else ():
            if c not in (0, 1):
                add(lanes.op("mul", va, 0, c), ("mul", a, c), level1)
            for op in ("shl", "lshr", "ashr") if 0 < c < width else ():
                add(lanes.op(op, va, 0, c), (op, a, c), level1)
    for op in PAIR_OPS:  # one more operator over a level-1 expression and a leaf
        for v1, e1 in level1:
            for v0, e0 in level0:
                add(lanes.op(op, v1, v0), (op, e1, e0), level2)
                if op == "sub":
                    add(lanes.op(op, v0, v1), (op, e0, e1), level2)
    for v1, e1 in list(bank.items()):  # a root add/sub/xor over two banked expressions
        for op, need in (("add", lanes.op("sub", target, v1)), ("sub", lanes.op("sub", v1, target)),
                         ("xor", target ^ v1)):
            e2 = bank.get(need)
            if e2 is not None and not (isinstance(e1, int) and isinstance(e2, int)):
                found.append((op, e1, e2))
    source = _canon(shape)
    limit = _size(shape) + MAX_GROWTH
    unique = {c: None for c in map(_canon, found) if c != source and _size(c) <= limit}
    return sorted(unique, key=lambda e: (_size(e), repr(e)))


def _leaves(expr: Expr) -> list:
    return [x for e in expr[1:] for x in _leaves(e)] if isinstance(expr, tuple) else [expr]


def _z3(expr: Expr, env: dict, width: int, ctx):
    import z3

    if isinstance(expr, int):
        return z3.BitVecVal(expr, width, ctx)
    if isinstance(expr, str):
        return env[expr]
    op, a, b = expr
    x, y = _z3(a, env, width, ctx), _z3(b, env, width, ctx)
    return {"add": lambda: x + y, "sub": lambda: x - y, "mul": lambda: x * y, "and": lambda: x & y,
            "or": lambda: x | y, "xor": lambda: x ^ y, "shl": lambda: x << y, "lshr": lambda: z3.LShR(x, y),
            "ashr": lambda: x >> y}[op]()


def prove_equal(source: Expr, target: Expr, width: int, rlimit: int = Z3_RLIMIT, ctx=None) -> bool:
    """Whether z3 proves `target` equal to `source` for every input, within `rlimit`.

    Neither can be poison: their shifts are by constants below the width, and alternatives
    carry no flags (flags on the source only make it less defined). The outcome near the
    resource limit may depend on what the z3 context `ctx` saw before, so callers give a fresh
    one (None: a new one) or one that has seen the same proofs in the same order every time.
    """
    import z3

    ctx = ctx or z3.Context()
    env = {n: z3.BitVec(n, width, ctx) for n in _leaves(source) + _leaves(target) if isinstance(n, str)}
    solver = z3.Solver(ctx=ctx)
    solver.set("rlimit", rlimit)
    # ctrl_c off: z3 would otherwise take SIGINT for itself during the check, so Ctrl-C would
    # only make this proof fail (and the build differ) instead of stopping the build.
    solver.set("ctrl_c", False)
    # Sum-of-monomials normal form settles arithmetic identities that bit-blasting finds hard.
    solver.add(z3.simplify(_z3(source, env, width, ctx) != _z3(target, env, width, ctx), som=True))
    return solver.check() == z3.unsat


def alternatives(shape: Expr, width: int, nvars: int) -> list[Expr]:
    """Proven equivalents of `shape` (cached by shape, in memory and on disk)."""
    key = (width, shape)
    if key not in _cache:
        disk_key = cache.digest("synthesize", cache.code_version(), width, shape, nvars)
        proven = _exprs(cache.load("proofs", disk_key))
        if proven is None:
            import z3

            proven = []
            candidates = enumerate_candidates(shape, width, nvars)
            random.Random(repr(key)).shuffle(candidates)  # a spread, not only the smallest
            # One context per shape (4 ms to make, so only for a shape with candidates): it sees
            # this shape's proofs, always in this order.
            ctx = z3.Context() if candidates else None
            for cand in candidates[:MAX_TRIES]:
                if prove_equal(shape, cand, width, ctx=ctx):
                    proven.append(cand)
                    if len(proven) == MAX_PROOFS:
                        break
            cache.store("proofs", disk_key, proven)
        _cache[key] = proven
    return _cache[key]


def _exprs(stored) -> list[Expr] | None:
    """Expressions back from JSON (lists again tuples); None if `stored` is not a list of them."""
    def expr(e):
        if isinstance(e, list) and len(e) == 3 and e[0] in SOURCE_OPS:
            return (e[0], expr(e[1]), expr(e[2]))
        if isinstance(e, (int, str)) and not isinstance(e, bool):
            return e
        raise ValueError(e)

    try:
        return [expr(e) for e in stored] if isinstance(stored, list) else None
    except ValueError:
        return None


def _dag(root: Instr, defs: dict[str, Instr], width: int) -> tuple[Expr, list[str]] | None:
    """`root`'s expression shape (leaves x0, x1, ...) and the values its leaves stand for."""
    leaves: list[str] = []
    inner = 0

    def leaf(arg: str) -> Expr | None:
        c = const_value(arg, width)
        if c is not None:
            return c if _common(c, width) else None
        if not arg.startswith("%"):
            return None  # undef, poison, constant expressions
        if arg not in leaves:
            leaves.append(arg)
        return f"x{leaves.index(arg)}"

    def node(ins: Instr, depth: int) -> Expr | None:
        nonlocal inner
        args = []
        for a in ins.args:
            sub = defs.get(a)
            if depth == 0 and sub is not None and _eligible(sub, width):
                inner += 1
                e = node(sub, 1)
            else:
                e = leaf(a)
            if e is None:
                return None
            args.append(e)
        if ins.op in ("mul", "shl", "lshr", "ashr") and not isinstance(args[1], int):
            if ins.op != "mul" or not isinstance(args[0], int):
                return None  # variable shifts and products are left alone
            args.reverse()
        if ins.op in ("shl", "lshr", "ashr") and args[1] >= width:
            return None
        return (ins.op, *args)

    expr = node(root, 0)
    if expr is None or not inner or len(leaves) > 3 or not leaves:
        return None
    return expr, leaves


def _common(c: int, width: int) -> bool:
    """A constant likely to recur (small, a power of two, a low mask or its complement), so that
    shapes repeat and hit the cache; random constants (say, from constant-blinding) would not."""
    mask = (1 << width) - 1
    low = c if c <= mask >> 1 else mask - c  # c, or ~c for negative constants
    return low <= SMALL_CONST or low & (low + 1) == 0 or c & (c - 1) == 0


def _eligible(ins: Instr, width: int) -> bool:
    return ins.text is None and ins.op in SOURCE_OPS and ins.result is not None and int_width(ins.ty) == width


@register
class Synthesize(Pass):
    name = "synthesize"
    description = "replaces small integer expression DAGs by synthesized equivalents proven with z3"

    def apply(self, fn: Function, rng: random.Random) -> bool:
        defs = {i.result: i for i in fn.instructions() if i.result}
        sites = []
        for block in fn.blocks:
            for ins in block.instrs:
                width = int_width(ins.ty) if ins.text is None else None
                if width in WIDTHS and _eligible(ins, width) and (found := _dag(ins, defs, width)):
                    sites.append((block, ins, width, *found))
        changed = False
        for block, ins, width, shape, leaves in rng.sample(sites, min(MAX_SITES, len(sites))):
            options = alternatives(shape, width, len(leaves))
            if not options:
                continue
            code: list[Instr] = []
            env = {f"x{i}": v for i, v in enumerate(leaves)}
            emit(rng.choice(options), env, width, ins.ty, lambda: fn.fresh("syn"), code, root=True)
            code[-1].result = ins.result
            at = block.instrs.index(ins)
            block.instrs[at : at + 1] = code
            changed = True
        return changed
