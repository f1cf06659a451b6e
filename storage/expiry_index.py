"""Names ordered by when they expire, so TTL reaping finds due names without a full scan."""

from __future__ import annotations

from sortedcontainers import SortedList

__all__ = ["ExpiryIndex"]


class ExpiryIndex:
    """A sorted set of (expire_at, name); expire_at is Unix epoch milliseconds. Not thread-safe."""

    def __init__(self) -> None:
        self._items: SortedList = SortedList()

    def __len__(self) -> int:
        return len(self._items)

    def add(self, expire_at: int, name: str) -> None:
        """Record that `name` expires at `expire_at`."""
        self._items.add((expire_at, name))

    def discard(self, expire_at: int, name: str) -> None:
        """Forget the (expire_at, name) pair if present."""
        self._items.discard((expire_at, name))

    def clear(self) -> None:
        """Forget everything."""
        self._items.clear()

    def earliest(self) -> int | None:
        """The earliest recorded expiry, or None when nothing expires."""
        return self._items[0][0] if self._items else None

    def due(self, now: int, limit: int = 0) -> list[str]:
        """Names whose expire_at <= now, earliest first; at most `limit` (0 = all)."""
        end = self._first_after(now)
        if limit:
            end = min(end, limit)
        return [name for _, name in self._items[:end]]

    def next_after(self, now: int) -> int | None:
        """The earliest expiry strictly after `now`, or None."""
        index = self._first_after(now)
        return self._items[index][0] if index < len(self._items) else None

    def _first_after(self, now: int) -> int:
        """Index of the first item with expire_at > now: (now + 1,) sorts before (now + 1, x)."""
        return int(self._items.bisect_left((now + 1,)))
