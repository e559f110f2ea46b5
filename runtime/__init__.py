"""Runtime: what a multivariant module needs at run time, and the host that runs it.

`discriminator.c` is linked into every multivariant module: the RNG its dispatchers call.
`run` executes a WASI command module under wasmtime, with policy override and tracing.
"""

from pathlib import Path

from mewe.types import MultivariantOptions

from .host import TRAP_EXIT_CODE, TraceDigest, run

DISCRIMINATOR = Path(__file__).with_name("discriminator.c")


def discriminator_defines(options: MultivariantOptions) -> tuple[str, ...]:
    """The macros that configure discriminator.c for a build."""
    defines = [f"MEWE_POLICY={options.policy.code}u", f"MEWE_POLICY_ARG={options.policy.arg}ull",
               f"MEWE_RESEED={options.reseed}u"]
    if options.policy.kind == "host":
        defines.append("MEWE_HOST_RNG")
    if options.trace:
        defines.append("MEWE_TRACE")
    return tuple(defines)


__all__ = ["run", "TraceDigest", "TRAP_EXIT_CODE", "DISCRIMINATOR", "discriminator_defines"]
