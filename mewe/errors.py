"""The one error type every stage raises for bad input or a failed tool.

Its message is a single line meant for the user; `details` carries multi-line output that
explains it (a compiler's diagnostics), shown before that line.
"""


class MeweError(Exception):
    """A user-facing failure: one line of message, optional diagnostics, an exit status."""

    def __init__(self, message: str, *, details: str = "", exit_code: int = 1):
        super().__init__(message)
        self.message = message
        self.details = details
        self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message
