"""A hand-off queue that lets many caller threads feed one actor in batches."""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

T = TypeVar("T")


class BatchInbox(Generic[T]):
    """Callers `put` items; the actor `drain`s them all at once, so one turn sees many.

    `put` returns True only for the first item after a drain: that caller sends the actor
    a single wake-up message, however many callers follow before the actor runs.
    """

    def __init__(self) -> None:
        self._items: list[T] = []
        self._lock = threading.Lock()

    def put(self, item: T) -> bool:
        """Queue `item`; True when the actor must be woken."""
        with self._lock:
            self._items.append(item)
            return len(self._items) == 1

    def drain(self) -> list[T]:
        """Take every queued item, oldest first."""
        with self._lock:
            items, self._items = self._items, []
            return items
