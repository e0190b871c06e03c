"""Checking the numbers a user types: one short `ValueError` naming the value and what was
expected, before any work is done (a NaN guidance would otherwise give a black image)."""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path


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


# Past these a value is a typo, not a setting: guidance 1e308 gives NaN images, a seed past 2**63
# overflows torch's generator, a batch of 10,000 asks for gigabytes before the first step.
MAX_GUIDANCE = 100.0
MAX_SEED = 2**63 - 1
MAX_BATCH = 64


def names(name: str, value) -> list[str]:
    """A setting that lists conditions: one name (`negative=sketch`) or a list of names."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    try:
        items = list(value)
    except TypeError:
        items = None
    if items is None or not all(isinstance(item, str) for item in items):
        raise ValueError(f"{name} must be a condition name or a list of them, e.g. {name}=[sketch,color], got "
                         f"{value!r}")
    return items


def strengths(value) -> dict[str, float]:
    """`strength='{sketch: 0.5}'`: condition -> a number >= 0 (0 drops it, 1 is as trained)."""
    if value is None:
        return {}
    if not hasattr(value, "items"):
        raise ValueError(f"strength must map conditions to numbers, e.g. strength='{{sketch: 0.5}}', got {value!r}")
    for condition, number in value.items():
        require(f"strength of {condition!r}", number, minimum=0, maximum=MAX_GUIDANCE)
    return dict(value.items())


def check_writable(folder: str | Path, name: str) -> None:
    """Before any work: files can be created in `folder` (or, if it does not exist yet, in its
    nearest existing parent, where it will be made). A probe file is created and removed:
    `os.access` says yes for root in /proc and on a read-only bind mount."""
    folder = Path(folder).absolute()
    existing = next(path for path in (folder, *folder.parents) if path.exists())
    if not existing.is_dir():
        raise ValueError(f"{name}={str(folder)!r} cannot be made: {existing} is a file, not a folder")
    try:
        handle, probe = tempfile.mkstemp(dir=existing, prefix=".write-probe-")
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise ValueError(f"{name}={str(folder)!r}: cannot write in {existing} ({error.strerror or error})") from None
