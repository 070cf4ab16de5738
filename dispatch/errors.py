"""What the dispatch services refuse with: no such thing, or not in this state."""

from __future__ import annotations

__all__ = ["Conflict", "NotFound"]


class NotFound(LookupError):
    """No alert or unit with that id."""


class Conflict(ValueError):
    """The change is not allowed in the current state; ``current`` names that state."""

    def __init__(self, detail: str, *, current: str | None = None) -> None:
        super().__init__(detail)
        self.current = current
