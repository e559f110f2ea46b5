"""Rewrite rules as data: `source => target [where ...]`, width-generic, each provable with z3.

The notation is prefix, one line a rule:

    add x y => add (xor x y) (shl (and x y) 1)
    mul x C => add (shl x K) (mul x D)   where K = bit C, D = sub C (shl 1 K), ne D 0
    C => xor D K                         where K = rand, D = xor C K

Lowercase names match any operand, uppercase names only integer constants, numbers are
constants (-1 is all ones at every width). Operators are LLVM's integer binops and icmp
predicates (a predicate makes an `icmp`). The source is one instruction (or a lone constant);
every operator of the target becomes a new flag-free instruction. `where` items bind constants
computed when the rule is applied (`rand`: a random constant; `bit C`: the index of a random
set bit of C; `log2 C`: C's exponent if C is a power of two; or any expression over
constants) or state conditions (an expression with a predicate). A rule whose `where` cannot be
met, or would shift by the width or more, does not apply. `W` is the width. A helper may
also appear inside an expression: `ashr x (log2 C)` reads `ashr x K where K = log2 C`.

`prove` checks a rule with z3: whenever the source is defined (for the flag-free source; flags
only make it less defined, and the target never carries flags), the target is defined and equal.

Installed packages add rules to `substitute` through the `mewe.rules` entry-point group (rule
text, or a callable returning it): `load_rule_plugins` parses them and proves each at every
width and flag set before any is used, caching proofs on disk.
"""

from __future__ import annotations

import random
import re
import sys
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import Callable, Union

from mewe.errors import MeweError

from . import cache as disk
from .ir import BINOPS, COMMUTATIVE, PREDICATES, WIDTHS, Instr

Expr = Union[str, int, tuple]  # a name, a constant, or (operator, operand, ...)

FUNCTIONS = {"rand": 0, "bit": 1, "log2": 1}  # `where` helpers and their arities
FLAGS = {"add": ("nsw", "nuw"), "sub": ("nsw", "nuw"), "mul": ("nsw", "nuw"), "shl": ("nsw", "nuw"),
         "udiv": ("exact",), "sdiv": ("exact",), "lshr": ("exact",), "ashr": ("exact",), "or": ("disjoint",),
         **{p: ("samesign",) for p in PREDICATES}}
_INT_RE = re.compile(r"-?\d+")
RULES_GROUP = "mewe.rules"  # the entry-point group of rule plugins


class NotApplicable(Exception):
    """A rule's `where` cannot be met for these operands."""


def _parse_expr(tokens: list[str]) -> Expr:
    if not tokens:
        raise ValueError("unexpected end")
    tok = tokens.pop(0)
    if tok == "(":
        expr = _parse_expr(tokens)
        if tokens.pop(0) != ")":
            raise ValueError("expected ')'")
        return expr
    if tok in BINOPS or tok in PREDICATES or tok in FUNCTIONS:
        arity = FUNCTIONS.get(tok, 2)
        return (tok, *(_parse_expr(tokens) for _ in range(arity)))
    if _INT_RE.fullmatch(tok):
        return int(tok)
    if re.fullmatch(r"[A-Za-z]\w*", tok):
        return tok
    raise ValueError(f"unexpected '{tok}'")


def parse_expr(text: str) -> Expr:
    tokens = text.replace("(", " ( ").replace(")", " ) ").split()
    expr = _parse_expr(tokens)
    if tokens:
        raise ValueError(f"trailing '{' '.join(tokens)}'")
    return expr


def leaves(expr: Expr) -> list:
    return [expr] if not isinstance(expr, tuple) else [x for e in expr[1:] for x in leaves(e)]


@dataclass(frozen=True)
class Rule:
    text: str
    source: Expr
    target: Expr
    where: tuple  # ("bind", name, expr) or ("check", expr), in order

    @classmethod
    def parse(cls, text: str) -> Rule:
        try:
            src, _, rest = text.partition("=>")
            tgt, _, where = rest.partition(" where ")
            source, target = parse_expr(src), parse_expr(tgt)
            items: list = []
            for item in filter(None, (i.strip() for i in where.split(","))):
                name, eq, expr = item.partition("=")
                if eq:
                    items.append(("bind", name.strip(), _lift(parse_expr(expr), items, top=True)))
                else:
                    items.append(("check", _lift(parse_expr(item), items)))
            target = _lift(target, items)
        except (ValueError, IndexError) as exc:
            raise ValueError(f"bad rule '{text}': {exc}") from None
        rule = cls(text, source, target, tuple(items))
        rule._check()
        return rule

    def _check(self) -> None:
        src, tgt = self.source, self.target
        ok_source = (isinstance(src, str) and src.isupper()) or (
            isinstance(src, tuple) and not any(isinstance(x, tuple) for x in src[1:]) and src[0] not in FUNCTIONS)
        names = [x for x in leaves(src) if isinstance(x, str)]
        constants = {x for x in names if x.isupper()} | {"W"}
        ok_where = "W" not in names
        for item in self.where:  # computed when the rule is applied: from constants only
            ok_where &= {x for x in leaves(item[-1]) if isinstance(x, str)} <= constants
            if item[0] == "bind":
                constants.add(item[1])
        unbound = {x for x in leaves(tgt) if isinstance(x, str)} - constants - set(names)
        if not ok_source or not ok_where or not isinstance(tgt, tuple) or unbound or _has_inner_predicate(tgt):
            raise ValueError(f"bad rule '{self.text}'")

    @property
    def op(self) -> str:
        """The source's operator (`add`, `eq`, ...), or "const" for a lone constant."""
        return self.source[0] if isinstance(self.source, tuple) else "const"

    def match(self, ins: Instr, width: int) -> dict | None:
        """Bind the source's names to `ins`'s operands (of an instruction with the source's
        operator), or None when they do not match."""
        found = _bind(self.source[1:], ins.args, width)
        if found is None and self.op in COMMUTATIVE:
            found = _bind(self.source[1:], ins.args[::-1], width)
        return found

    def instantiate(self, bindings: dict, width: int, ty: str, rng: random.Random, fresh: Callable[[], str]) -> list[Instr]:
        """New instructions computing the target (the last one computes the root, unnamed)."""
        env = dict(bindings, W=width)
        for item in self.where:
            value = _eval(item[-1], env, width, rng)
            if item[0] == "check" and not value:
                raise NotApplicable
            if item[0] == "bind":
                env[item[1]] = value
        out: list[Instr] = []
        emit(self.target, env, width, ty, fresh, out, root=True)
        return out


def _lift(expr: Expr, items: list, top: bool = False) -> Expr:
    """`expr` with helpers below its top bound in `items` first: the prover and the emitter take
    helpers only as the whole of a binding. The binding's name is the helper's text."""
    if not isinstance(expr, tuple):
        return expr
    expr = (expr[0], *(_lift(a, items) for a in expr[1:]))
    if expr[0] not in FUNCTIONS or top:
        return expr
    name = _show(expr)
    if ("bind", name, expr) not in items:
        items.append(("bind", name, expr))
    return name


def _show(expr: Expr) -> str:
    return f"({' '.join(map(_show, expr))})" if isinstance(expr, tuple) else str(expr)


def _has_inner_predicate(expr: Expr) -> bool:
    return any(isinstance(a, tuple) and (a[0] in PREDICATES or _has_inner_predicate(a)) for a in expr[1:])


def const_value(text: str, width: int) -> int | None:
    """An integer literal operand as an unsigned value at `width`, else None."""
    if _INT_RE.fullmatch(text):
        return int(text) % (1 << width)
    return {"true": 1, "false": 0}.get(text) if width == 1 else None


def literal(value: int, width: int) -> str:
    """How LLVM prints constant `value` of type i<width> (signed)."""
    value %= 1 << width
    if width == 1:
        return "true" if value else "false"
    return str(value - (1 << width) if value >> (width - 1) else value)


def _bind(patterns: tuple, args: list[str], width: int) -> dict | None:
    env: dict = {}
    for pat, arg in zip(patterns, args):
        if arg in ("undef", "poison"):
            return None
        if isinstance(pat, int) or pat.isupper():
            value = const_value(arg, width)
            if value is None or (isinstance(pat, int) and value != pat % (1 << width)):
                return None
            if isinstance(pat, int):
                continue
            arg = value
        if env.setdefault(pat, arg) != arg:
            return None
    return env


def _eval(expr: Expr, env: dict, width: int, rng: random.Random) -> int:
    """Evaluate a `where` expression on constants (unsigned values mod 2**width)."""
    if isinstance(expr, int):
        return expr % (1 << width)
    if isinstance(expr, str):
        return env[expr]
    op, *args = expr
    vals = [_eval(a, env, width, rng) for a in args]
    if op == "rand":
        return rng.getrandbits(width)
    if op == "bit":
        bits = [i for i in range(width) if vals[0] >> i & 1]
        if not bits:
            raise NotApplicable
        return rng.choice(bits)
    if op == "log2":
        if vals[0] == 0 or vals[0] & (vals[0] - 1):
            raise NotApplicable
        return vals[0].bit_length() - 1
    return fold(op, vals[0], vals[1], width)


def fold(op: str, a: int, b: int, width: int) -> int:
    """Concrete semantics of a flag-free operator on unsigned values; NotApplicable where undefined."""
    mask = (1 << width) - 1

    def signed(v: int) -> int:
        return v - (1 << width) if v >> (width - 1) else v

    if op in ("shl", "lshr", "ashr") and b >= width:
        raise NotApplicable
    if op in ("udiv", "urem", "sdiv", "srem") and (b == 0 or (op[0] == "s" and signed(a) == -(1 << (width - 1)) and b == mask)):
        raise NotApplicable
    ops = {
        "add": lambda: a + b, "sub": lambda: a - b, "mul": lambda: a * b, "and": lambda: a & b,
        "or": lambda: a | b, "xor": lambda: a ^ b, "shl": lambda: a << b, "lshr": lambda: a >> b,
        "ashr": lambda: signed(a) >> b, "udiv": lambda: a // b, "urem": lambda: a % b,
        "sdiv": lambda: int(signed(a) / signed(b)), "srem": lambda: signed(a) - signed(b) * int(signed(a) / signed(b)),
        "eq": lambda: a == b, "ne": lambda: a != b, "ult": lambda: a < b, "ule": lambda: a <= b,
        "ugt": lambda: a > b, "uge": lambda: a >= b, "slt": lambda: signed(a) < signed(b),
        "sle": lambda: signed(a) <= signed(b), "sgt": lambda: signed(a) > signed(b), "sge": lambda: signed(a) >= signed(b),
    }
    return int(ops[op]()) & mask


def emit(expr: Expr, env: dict, width: int, ty: str, fresh: Callable[[], str], out: list[Instr], root: bool = False) -> str:
    if isinstance(expr, int):
        return literal(expr, width)
    if isinstance(expr, str):
        value = env[expr]
        return literal(value, width) if isinstance(value, int) else value
    op, a, b = expr
    args = [emit(a, env, width, ty, fresh, out), emit(b, env, width, ty, fresh, out)]
    result = None if root else fresh()
    if op in PREDICATES:
        out.append(Instr("icmp", result, pred=op, ty=ty, args=args))
    else:
        out.append(Instr(op, result, ty=ty, args=args))
    return result or ""


# --- proofs -------------------------------------------------------------------------------

def prove(rule: Rule, width: int, flags: tuple[str, ...] = ()) -> str | None:
    """Prove `rule` at `width` for a source carrying `flags`; None if proven, else a counterexample
    (one line: the source's names, then the `where` constants, valued as LLVM prints them)."""
    import z3

    env: dict = {"W": z3.BitVecVal(width, width)}
    pre = []
    for name in dict.fromkeys(x for x in leaves(rule.source) if isinstance(x, str)):
        env[name] = z3.BitVec(name, width)
    for item in rule.where:
        if item[0] == "bind" and isinstance(item[2], tuple) and item[2][0] in FUNCTIONS:
            fn, *args = item[2]
            k = env[item[1]] = z3.BitVec(item[1], width)
            if fn == "bit":
                pre += [z3.ULT(k, width), z3.Extract(0, 0, z3.LShR(_z3(args[0], env, width)[0], k)) == 1]
            elif fn == "log2":
                pre += [z3.ULT(k, width), _z3(args[0], env, width)[0] == z3.BitVecVal(1, width) << k]
            continue
        value, poison = _z3(item[-1], env, width)
        pre.append(z3.Not(poison))
        if item[0] == "bind":
            env[item[1]] = value
        else:
            pre.append(value == 1)
    src, src_poison = _z3(rule.source, env, width, flags)
    tgt, tgt_poison = _z3(rule.target, env, width)
    # Sum-of-monomials normal form settles multiplication identities that bit-blasting cannot.
    claim = z3.simplify(z3.And(*pre, z3.Not(src_poison), z3.Or(tgt_poison, tgt != src)), som=True)
    solver = z3.Solver()
    solver.set("ctrl_c", False)  # leave SIGINT to Python: Ctrl-C must stop the build (see synthesize)
    solver.add(claim)
    if solver.check() == z3.unsat:
        return None
    model = solver.model()
    return ", ".join(f"{name} = {literal(model.eval(value, model_completion=True).as_long(), width)}"
                     for name, value in env.items() if name != "W")


def _z3(expr: Expr, env: dict, width: int, flags: tuple[str, ...] = ()):
    """(value, poison) of `expr` in z3; predicates give a width-wide 0/1 value."""
    import z3

    if isinstance(expr, int):
        return z3.BitVecVal(expr % (1 << width), width), z3.BoolVal(False)
    if isinstance(expr, str):
        return env[expr], z3.BoolVal(False)
    op, a, b = expr
    (x, px), (y, py) = _z3(a, env, width), _z3(b, env, width)
    zero, one = z3.BitVecVal(0, width), z3.BitVecVal(1, width)
    poison = [px, py]
    if op in ("shl", "lshr", "ashr"):
        poison.append(z3.UGE(y, width))
    if op in ("udiv", "urem", "sdiv", "srem"):  # undefined behaviour: at least as bad as poison
        poison.append(y == 0)
        if op[0] == "s":
            poison.append(z3.And(x == z3.BitVecVal(1 << (width - 1), width), y == z3.BitVecVal(-1, width)))
    value = {
        "add": lambda: x + y, "sub": lambda: x - y, "mul": lambda: x * y, "and": lambda: x & y,
        "or": lambda: x | y, "xor": lambda: x ^ y, "shl": lambda: x * (one << y), "lshr": lambda: z3.LShR(x, y),
        "ashr": lambda: x >> y, "udiv": lambda: z3.UDiv(x, y), "urem": lambda: z3.URem(x, y),
        "sdiv": lambda: x / y, "srem": lambda: z3.SRem(x, y),
    }.get(op)
    if value is not None:
        value = value()
    else:
        cond = {"eq": x == y, "ne": x != y, "ult": z3.ULT(x, y), "ule": z3.ULE(x, y), "ugt": z3.UGT(x, y),
                "uge": z3.UGE(x, y), "slt": x < y, "sle": x <= y, "sgt": x > y, "sge": x >= y}[op]
        value = z3.If(cond, one, zero)
    for flag in flags:
        poison.append(_flag_poison(op, flag, x, y, width))
    return value, z3.Or(*poison)


def _flag_poison(op: str, flag: str, x, y, width: int):
    """When `op` with `flag` is poison (LLVM LangRef)."""
    import z3

    wide = {"nsw": lambda v: z3.SignExt(width, v), "nuw": lambda v: z3.ZeroExt(width, v)}
    if op in ("add", "sub", "mul") and flag in wide:
        ext = wide[flag]
        exact = {"add": ext(x) + ext(y), "sub": ext(x) - ext(y), "mul": ext(x) * ext(y)}[op]
        result = {"add": x + y, "sub": x - y, "mul": x * y}[op]
        return ext(result) != exact
    if op == "shl":
        back = (x << y) >> y if flag == "nsw" else z3.LShR(x << y, y)
        return back != x
    if flag == "exact":
        if op == "udiv":
            return z3.URem(x, y) != 0
        if op == "sdiv":
            return z3.SRem(x, y) != 0
        return (z3.LShR(x, y) if op == "lshr" else x >> y) << y != x
    if flag == "disjoint":
        return x & y != 0
    if flag == "samesign":
        return z3.Extract(width - 1, width - 1, x) != z3.Extract(width - 1, width - 1, y)
    raise ValueError(f"no flag {flag} on {op}")


def flag_sets(rule: Rule) -> list[tuple[str, ...]]:
    """Every combination of poison-generating flags the rule's source instruction may carry."""
    flags = FLAGS.get(rule.op, ())
    return [tuple(f for i, f in enumerate(flags) if mask >> i & 1) for mask in range(1 << len(flags))]


# --- rules from plugins ---------------------------------------------------------------------

_rule_plugins: dict[str, tuple[Rule, ...]] = {}  # "name = module:object" -> its proven rules


def prove_rules(text: str, origin: str = "rules") -> list[Rule]:
    """Parse `text` (one rule a line, `#` comments) and prove every rule at every width
    `substitute` applies rules at, for every flag set of its source. A malformed or wrong rule
    is a one-line MeweError starting with `origin`; proofs are cached on disk."""
    out = []
    for line in filter(None, (raw.split("#", 1)[0].strip() for raw in text.splitlines())):
        try:
            rule = Rule.parse(line)
        except ValueError as exc:
            raise MeweError(f"{origin}: {exc}") from None
        for width in WIDTHS:
            for flags in flag_sets(rule):
                wrong = _proof(rule, width, flags, origin)
                if wrong is not None:
                    at = f"i{width}" + (f" with {' '.join(flags)}" if flags else "")
                    raise MeweError(f"{origin}: '{line}' is wrong at {at}: {wrong}")
        out.append(rule)
    return out


@lru_cache(maxsize=1)
def _prover_version() -> str:
    return disk.digest(Path(__file__).read_text())


def _proof(rule: Rule, width: int, flags: tuple[str, ...], origin: str) -> str | None:
    """`prove`'s answer, from the disk cache when this prover has given it before."""
    key = disk.digest("proof", rule.text, width, flags, _prover_version())
    entry = disk.load("proofs", key)
    if isinstance(entry, dict) and isinstance(entry.get("counterexample", 0), (str, type(None))):
        return entry["counterexample"]
    try:
        import z3  # noqa: F401  (a declared dependency, but imported only when a proof is needed)
    except ImportError:
        raise MeweError(f"{origin}: proving its rules needs z3 (pip install z3-solver)") from None
    try:
        answer = prove(rule, width, flags)
    except Exception as exc:  # a rule the prover cannot model is the plugin's error, as one line
        raise MeweError(f"{origin}: cannot prove '{rule.text}' at i{width}: {_line(exc)}") from None
    disk.store("proofs", key, {"counterexample": answer})
    return answer


def _line(exc: Exception) -> str:
    return str(exc).partition("\n")[0] or type(exc).__name__


_scanned: dict[tuple[str, ...], dict[str, tuple]] = {}


def installed_entry_points(group: str) -> tuple:
    """The `group` entry points of the packages on sys.path, scanned once per path for every
    group: a scan reads every installed distribution's metadata (about 7 ms), and a build asks
    per pass and for passes and rules both."""
    key = tuple(sys.path)
    if key not in _scanned:
        found = entry_points()
        _scanned[key] = {g: tuple(found.select(group=g)) for g in found.groups}
    return _scanned[key].get(group, ())


def load_rule_plugins() -> list[Rule]:
    """Parse and prove the rules of installed packages' `mewe.rules` entry points, which
    `substitute` then applies with its own (idempotent; `mewe.passes.load_plugins` calls it).
    Returns every loaded plugin rule. A plugin that fails to load, or a malformed or wrong rule,
    is a one-line MeweError naming the entry point."""
    for ep in installed_entry_points(RULES_GROUP):
        key = f"{ep.name} = {ep.value}"
        if key in _rule_plugins:
            continue
        origin = f"rule plugin '{key}'"
        try:
            obj = ep.load()
            text = obj() if callable(obj) else obj
        except Exception as exc:  # a broken plugin is the plugin's error, reported as such
            raise MeweError(f"{origin} failed to load: {_line(exc)}") from None
        if not isinstance(text, str):
            raise MeweError(f"{origin} is not rule text (a str, or a callable returning one)")
        _rule_plugins[key] = tuple(prove_rules(text, origin))
    return plugin_rules()


def plugin_rules(op: str | None = None) -> list[Rule]:
    """The loaded plugin rules (those whose source operator is `op`, if given), sorted by entry
    point: every process (a worker loads them itself) then draws from the same list."""
    return [r for key in sorted(_rule_plugins) for r in _rule_plugins[key] if op is None or r.op == op]


def plugin_rules_digest() -> str:
    """A digest of the loaded plugin rules ("" if none): part of variant cache keys."""
    texts = tuple(r.text for r in plugin_rules())
    return disk.digest("rules", texts) if texts else ""
