"""Runtime: what a multivariant module needs at run time, and the host that runs it.

`run` executes a WASI command module under wasmtime.
"""

from .host import TRAP_EXIT_CODE, run

__all__ = ["run", "TRAP_EXIT_CODE"]
