"""The one error type every stage raises for bad input or a failed tool.

Its message is a single line meant for the user; `details` carries multi-line output that
explains it (a compiler's diagnostics), shown before that line.
"""


import os
import sys
from typing import Callable


class MeweError(Exception):
    """A user-facing failure: one line of message, optional diagnostics, an exit status."""

    def __init__(self, message: str, *, details: str = "", exit_code: int = 1):
        super().__init__(message)
        self.message = message
        self.details = details
        self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message


def run_reporting(prog: str, action: Callable[[], int]) -> int:
    """Run a command-line tool's `action`: a MeweError becomes its diagnostics and one
    `PROG: error: ...` line with its exit code, Ctrl-C exit status 130."""
    try:
        return action()
    except MeweError as err:
        if err.details:
            print(err.details, file=sys.stderr)
        print(f"{prog}: error: {err.message}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        # Outputs and temp files were already dealt with as the interrupt unwound. Leave at
        # once: objects cut off mid-construction (z3's contexts) complain when collected.
        print(f"{prog}: interrupted", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
