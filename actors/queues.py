"""Bounded queues of in-flight work between stages, and the shared pool of pose actors.

A stage's queue holds the Ray object references of batches handed on but not yet taken up by the
next stage.  When it is full the producer is not asked for more (backpressure), so memory stays
bounded however long the stream; entries leave in the order they entered, which keeps each feed's
frames in order even when a pool of pose actors finishes them out of order.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Generic, TypeVar

import ray

T = TypeVar("T")


class QueueFullError(RuntimeError):
    pass


class BoundedQueue(Generic[T]):
    """First in, first out, at most ``maxsize`` entries; ``max_depth`` records the deepest it got."""

    def __init__(self, maxsize: int, name: str = "queue"):
        if maxsize < 1:
            raise ValueError(f"BoundedQueue {name!r}: maxsize must be >= 1, got {maxsize}")
        self.maxsize, self.name = maxsize, name
        self._items: deque[T] = deque()
        self.max_depth = 0

    def full(self) -> bool:
        return len(self._items) >= self.maxsize

    def put(self, item: T) -> None:
        if self.full():
            raise QueueFullError(f"{self.name}: full ({self.maxsize}); the producer must wait")
        self._items.append(item)
        self.max_depth = max(self.max_depth, len(self._items))

    def head(self) -> T:
        return self._items[0]

    def pop(self) -> T:
        return self._items.popleft()

    def drain(self) -> list[T]:
        items = list(self._items)
        self._items.clear()
        return items

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[T]:
        return iter(self._items)


class ActorPool:
    """Hands each call to the actor with the fewest calls outstanding (like ``ray.util.ActorPool``,
    but the caller keeps the references and their order), or to one chosen actor: a stream whose
    calls share state in the actor (a live feed's pose tracking) takes a :meth:`home` and sends every
    call there, in order."""

    def __init__(self, actors: list):
        if not actors:
            raise ValueError("ActorPool: needs at least one actor")
        self.actors = actors
        self.outstanding = [0] * len(actors)
        self.homed = [0] * len(actors)  # streams whose home each actor is

    def submit(self, method: str, *args, to: int | None = None) -> tuple[ray.ObjectRef, int]:
        i = min(range(len(self.actors)), key=self.outstanding.__getitem__) if to is None else to
        self.outstanding[i] += 1
        return getattr(self.actors[i], method).remote(*args), i

    def done(self, i: int) -> None:
        self.outstanding[i] -= 1

    def home(self) -> int:
        """The actor with the fewest streams at home: a new stream's home."""
        i = min(range(len(self.actors)), key=lambda a: (self.homed[a], self.outstanding[a]))
        self.homed[i] += 1
        return i

    def leave(self, i: int) -> None:
        self.homed[i] -= 1
