"""Result of one conformance stage of `facecast aniportrait check`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StageResult:
    """One checked output: its max-abs error against the fixture and the tolerance it must meet.

    For pose images `max_abs_error` is the number of differing pixels and `tolerance` the number allowed;
    `note` explains any accepted difference.
    """

    stage: str
    name: str
    max_abs_error: float
    tolerance: float
    note: str = ""

    @property
    def passed(self) -> bool:
        return self.max_abs_error <= self.tolerance
