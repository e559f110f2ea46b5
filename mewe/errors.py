"""The one error type every stage raises for bad input or a failed tool.

Its message is a single line meant for the user; `details` carries multi-line output that
explains it (a compiler's diagnostics), shown before that line.
"""


import os
import signal
import sys
import threading
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


_interrupted = False  # Ctrl-C was pressed while run_reporting's handler was installed


def _on_sigint(signum, frame):
    global _interrupted
    _interrupted = True
    raise KeyboardInterrupt


def raise_if_interrupted() -> None:
    """Raise KeyboardInterrupt if Ctrl-C was pressed since the tool started.

    Python drops an exception raised inside a finalizer (llvmlite frees LLVM objects in
    `__del__`), so an interrupt that lands there is lost; long loops and every output's
    final rename call this so that one Ctrl-C always stops the build."""
    if _interrupted:
        raise KeyboardInterrupt


def run_reporting(prog: str, action: Callable[[], int]) -> int:
    """Run a command-line tool's `action`: a MeweError becomes its diagnostics and one
    `PROG: error: ...` line with its exit code, Ctrl-C exit status 130."""
    global _interrupted
    _interrupted = False
    install = threading.current_thread() is threading.main_thread() \
        and signal.getsignal(signal.SIGINT) is signal.default_int_handler  # never un-ignore SIGINT
    previous = signal.signal(signal.SIGINT, _on_sigint) if install else None
    try:
        status = action()
        raise_if_interrupted()  # swallowed after the last check: still an interrupted run
        return status
    except MeweError as err:
        if err.details:
            print(err.details, file=sys.stderr)
        print(f"{prog}: error: {err.message}", file=sys.stderr)
        return err.exit_code
    except BrokenPipeError:
        # The reader went away (`mewe inspect x.wasm | head -1`): stop quietly, as a C tool
        # killed by SIGPIPE would; point stdout at /dev/null so the exit flush cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except KeyboardInterrupt:
        # Outputs and temp files were already dealt with as the interrupt unwound. Leave at
        # once: objects cut off mid-construction (z3's contexts) complain when collected.
        print(f"{prog}: interrupted", file=sys.stderr)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    finally:
        if install:
            signal.signal(signal.SIGINT, previous)
