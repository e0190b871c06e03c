"""Building the extractors a model folder's `conditions.yaml` names, without running anything else.

A model folder may come from someone else, and `conditions.yaml` names callables (`_target_`).
Handing it to hydra's `instantiate` would call any importable function (`_target_: shutil.copy`
copies a file). Here a target is built only if it is one of the project's own extractors: an
`Extractor` class of `decompose` (or a subclass defined there), or a function of `decompose` or
`composer.zoo` marked `@builds_extractor` (`TextEncoder.minilm`, `composer.zoo.scenes_depth`, ...).
Its arguments must be plain data: no nested `_target_`, no hydra keys (`_args_`, `_partial_`, ...).
An extractor of the user's own (a new condition written outside the package) is built only when
the user names it in `trusted`.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable

from decompose import Extractor

ROOTS = ("decompose", "composer.zoo")  # where a shared conditions.yaml may point
PLAIN = (str, int, float, bool, type(None))


def build_extractors(conditions: dict, *, trusted: Iterable[str] = (), where: str = "conditions.yaml") -> list:
    """The extractors `conditions` (a model folder's `conditions.yaml`) names, each one checked."""
    trusted = {trusted} if isinstance(trusted, str) else set(trusted)  # one name, or a list of them
    return [build_extractor(settings["extractor"], trusted=trusted, where=f"{where}: condition {name!r}")
            for name, settings in conditions.items() if isinstance(settings, dict) and settings.get("extractor")]


def build_extractor(settings, *, trusted: set[str], where: str):
    if not isinstance(settings, dict) or not isinstance(settings.get("_target_"), str):
        raise ValueError(f"{where}: the extractor must be a mapping with a _target_ string, got {settings!r}")
    target = settings["_target_"]
    arguments = {key: value for key, value in settings.items() if key != "_target_"}
    _check_plain(arguments, f"{where} ({target})")
    build = _locate(target, where) if target in trusted else _allowed(target, where)
    try:
        return build(**arguments)
    except TypeError as error:
        raise ValueError(f"{where}: {target} does not take these arguments ({error})") from None


def _allowed(target: str, where: str):
    """The callable `target` names, if it is one of the project's own extractors."""
    refusal = (f"{where}: _target_ {target!r} is not one of the project's extractors; a model folder may build "
               f"only Extractor classes and @builds_extractor functions of {' or '.join(ROOTS)}. If you wrote this "
               f"extractor and trust the folder, pass trusted_extractors=[{target}]")
    if not any(target.startswith(root + ".") for root in ROOTS):
        raise ValueError(refusal)
    found = _locate(target, where)
    module = getattr(found, "__module__", "") or ""
    own = any(module == root or module.startswith(root + ".") for root in ROOTS)
    if isinstance(found, type) and issubclass(found, Extractor) and own:
        return found
    if getattr(getattr(found, "__func__", found), "builds_extractor", False) and own:
        return found
    raise ValueError(refusal)


def _locate(target: str, where: str):
    """`package.module.attribute[.attribute]` -> the object, importing the longest module prefix."""
    parts = target.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            found = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for name in parts[cut:]:
                found = getattr(found, name)
        except AttributeError:
            break
        return found
    raise ValueError(f"{where}: cannot find _target_ {target!r}")


def _check_plain(value, where: str, depth: int = 0) -> None:
    """Arguments are numbers, strings, booleans, None and lists/mappings of them: nothing hydra
    would build or call."""
    if depth > 8:
        raise ValueError(f"{where}: arguments nested too deeply")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str) or key.startswith("_"):
                raise ValueError(f"{where}: argument {key!r} is not allowed (no hydra keys or nested _target_)")
            _check_plain(item, where, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check_plain(item, where, depth + 1)
    elif not isinstance(value, PLAIN):
        raise ValueError(f"{where}: argument {value!r} is not plain data")
