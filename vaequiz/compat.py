"""Stand-ins for standard-library features newer than Python 3.10, the oldest Python vaequiz
runs on (Gradescope's default autograder image has 3.10). CI checks the code base with vermin."""

from __future__ import annotations

from enum import Enum


class StrEnum(str, Enum):
    """``enum.StrEnum`` (3.11): members are strings and print as their value."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)
