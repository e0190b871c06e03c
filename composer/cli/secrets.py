"""Settings that are secrets (an LLM's API key) never reach a file or a printed line.

A setting is secret when its name ends in one of `SECRET_NAMES` (`llm.api_key`, ...). `masked`
replaces such values in a settings tree before it is recorded (`index.jsonl`); `scrub` removes
their text from anything printed (a crash's traceback, which hydra would otherwise print after
the overrides, key included).
"""

from __future__ import annotations

MASK = "***"
SECRET_NAMES = ("api_key", "apikey", "token", "password", "secret")


def is_secret(name: str) -> bool:
    return str(name).lower().endswith(SECRET_NAMES)


def masked(settings):
    """`settings` (plain dicts and lists) with every non-empty secret value replaced by `MASK`."""
    if isinstance(settings, dict):
        return {key: MASK if is_secret(key) and value not in (None, "") else masked(value)
                for key, value in settings.items()}
    if isinstance(settings, list):
        return [masked(value) for value in settings]
    return settings


def secret_values(settings) -> list[str]:
    """The text of every non-empty secret value in `settings`, longest first."""
    found: list[str] = []
    if isinstance(settings, dict):
        for key, value in settings.items():
            if is_secret(key) and isinstance(value, (str, int)) and str(value):
                found.append(str(value))
            else:
                found += secret_values(value)
    elif isinstance(settings, list):
        for value in settings:
            found += secret_values(value)
    return sorted(set(found), key=len, reverse=True)


def scrub(text: str, secrets: list[str]) -> str:
    """`text` with every secret of 4 or more characters replaced by `MASK` (a shorter one is no
    real key, and replacing it everywhere would garble the message)."""
    for secret in secrets:
        if len(secret) >= 4:
            text = text.replace(secret, MASK)
    return text
