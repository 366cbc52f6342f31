"""The one exception a command raises for an expected failure: printed as one line, no traceback."""

from __future__ import annotations


class CliError(Exception):
    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code
