"""Watch subscriptions of a key/value node: the listeners and bounded event queue of one
`DRefNative.Watch` stream, which a replacing stream can take over without a gap."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

from dref.contracts.changes import ChangeEvent
from dref.storage.kv_state_machine import KeyValueStateMachine, watch_event
from dref.wire.proto import dref_native_pb2 as native

WATCH_BUFFER = 1024
"""Events a Watch stream holds for a slow reader before it sends RESYNC instead."""


HANDOVER_TIMEOUT = 5.0
"""Seconds a replacing Watch waits for the stream it replaces to end."""



class WatchSubscription:
    """The listeners and event queue of one watcher; a replacing stream takes it over."""

    def __init__(self, state_machine: KeyValueStateMachine, on_close: Callable[[], None]) -> None:
        self._sm = state_machine
        self._on_close = on_close
        self._events: queue.Queue[native.WatchEvent | None] = queue.Queue(WATCH_BUFFER)
        self._overflowed = threading.Event()
        self._cancels: dict[str, Callable[[], None]] = {}
        self._cancel_resync = state_machine.add_resync_listener(
            lambda: self._push(native.WatchEvent(kind=native.WatchEvent.RESYNC))
        )
        self._lock = threading.Lock()
        self._taken = False  # a replacing stream waits to take over
        self._released = threading.Event()  # the serving stream has ended
        self.ending = threading.Event()
        """Set when a replacing stream asks the serving one to end."""

    def watch(self, names: set[str]) -> None:
        """Listen to exactly `names` from now on."""
        for name in set(self._cancels) - names:
            self._cancels.pop(name)()
        for name in names - set(self._cancels):
            self._cancels[name] = self._sm.listeners.add(name, self._on_change)

    def next_item(self) -> native.WatchEvent | None:
        """The next event to send (RESYNC after an overflow); None after half a second idle
        or a wake-up, so the caller can re-check whether to go on."""
        if self._overflowed.is_set():
            drain(self._events)
            self._overflowed.clear()
            return native.WatchEvent(kind=native.WatchEvent.RESYNC)
        try:
            return self._events.get(timeout=0.5)
        except queue.Empty:
            return None

    def wake(self) -> None:
        """Make a waiting `next_item` return now."""
        self._push(None)

    def hand_over(self, timeout: float) -> bool:
        """Ask the serving stream to end and wait for it; True if the caller now owns this
        subscription (False: it did not end in time and will close it)."""
        with self._lock:
            self._taken = True
        self.ending.set()
        self.wake()
        ended = self._released.wait(timeout)
        with self._lock:
            if not ended and not self._released.is_set():
                self._taken = False
                return False
            self._taken = False
            self._released.clear()
            self.ending.clear()
            return True

    def release(self) -> None:
        """The serving stream ended: close, unless a replacing stream takes over."""
        with self._lock:
            if not self._taken:
                for cancel in self._cancels.values():
                    cancel()
                self._cancels.clear()
                self._cancel_resync()
                self._on_close()
            self._released.set()

    def _on_change(self, event: ChangeEvent) -> None:
        self._push(watch_event(event))

    def _push(self, item: native.WatchEvent | None) -> None:
        try:
            self._events.put_nowait(item)
        except queue.Full:
            if item is not None:
                self._overflowed.set()



def drain(events: queue.Queue[Any]) -> None:
    while True:
        try:
            events.get_nowait()
        except queue.Empty:
            return

