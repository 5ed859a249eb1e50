"""Durations are strings in desired.yml ("500ms", "30s", "5m", "1h", "7d") so YAML never guesses units."""

import re
from datetime import timedelta
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, StrictStr

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PATTERN = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)$")


def parse_duration(text: str) -> timedelta:
    match = _PATTERN.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a duration: write a number and a unit (500ms, 30s, 5m, 1h, 7d)")
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


def _check(text: str) -> str:
    if parse_duration(text) <= timedelta(0):
        raise ValueError(f"{text!r} must be longer than zero")
    return text


def _needs_unit(value: object) -> object:
    # YAML reads `30` as a number; "must be a string" would not tell the operator what to write.
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise ValueError(f"{value} has no unit: write a duration like {value}s (units: ms, s, m, h, d)")
    return value


Duration = Annotated[StrictStr, BeforeValidator(_needs_unit), AfterValidator(_check)]
