"""Checking the numbers a user types: one short `ValueError` naming the value and what was
expected, before any work is done (a NaN guidance would otherwise give a black image)."""

from __future__ import annotations

import math


def require(name: str, value, *, minimum: float | None = None, maximum: float | None = None,
            integer: bool = False, optional: bool = False) -> None:
    """A number a user typed: finite, of the right kind and in range, else a `ValueError` naming it."""
    if value is None and optional:
        return
    kind = "a whole number" if integer else "a finite number"
    bounds = " and ".join(part for part in (f">= {minimum}" if minimum is not None else "",
                                            f"<= {maximum}" if maximum is not None else "") if part)
    expected = f"{name} must be {kind}{' ' + bounds if bounds else ''}" + (" (or null)" if optional else "")
    number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not (number and (not integer or value == int(value)) and (minimum is None or value >= minimum)
            and (maximum is None or value <= maximum)):
        raise ValueError(f"{expected}, got {value!r}")
