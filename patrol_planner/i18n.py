"""Message catalogues of the plan sheet and map: Kazakh (kk), Russian (ru) and English (en).

Catalogues are JSON files in ``patrol_planner/locales``; every language has every key (a test
checks). Russian is the default: it is read by every commander in Kazakhstan.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

__all__ = ["DEFAULT_LANG", "LANGUAGES", "Messages", "messages"]

LANGUAGES: tuple[str, ...] = ("kk", "ru", "en")
DEFAULT_LANG = "ru"


class Messages:
    """The texts of one language: ``m("within_walk", m=5)`` formats a message."""

    def __init__(self, lang: str, catalogue: dict[str, str]) -> None:
        self.lang = lang
        self.catalogue = catalogue

    def __call__(self, key: str, **values: object) -> str:
        try:
            text = self.catalogue[key]
        except KeyError as e:
            msg = f"no message {key!r} in the {self.lang!r} catalogue"
            raise KeyError(msg) from e
        return text.format(**values) if values else text

    def labels(self, *keys: str) -> dict[str, str]:
        """Several unformatted messages, for a renderer that takes plain labels."""
        return {k: self(k) for k in keys}


@cache
def messages(lang: str = DEFAULT_LANG) -> Messages:
    """The catalogue of ``lang`` (``kk``, ``ru`` or ``en``)."""
    if lang not in LANGUAGES:
        msg = f"unknown language {lang!r}; expected one of {list(LANGUAGES)}"
        raise ValueError(msg)
    text = resources.files("patrol_planner.locales").joinpath(f"{lang}.json").read_text(encoding="utf-8")
    return Messages(lang, json.loads(text))
