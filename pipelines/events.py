"""Progress reporting: long applications and fits report an :class:`Event` to a handler."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Event:
    """Progress of one long operation, as Create ML's ``Event``."""

    origin: str
    item_count: int
    total_item_count: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def fraction_completed(self) -> float | None:
        if not self.total_item_count:
            return None
        return min(1.0, self.item_count / self.total_item_count)


EventHandler = Callable[[Event], None]
