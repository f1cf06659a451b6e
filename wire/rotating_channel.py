"""A gRPC channel with mutual TLS that follows certificate rotation.

gRPC fixes a channel's credentials when it is made, so a long-lived channel (a client's
watches and status calls, a peer link on `--peer-transport grpc`) would keep dialing with
the files it started with: after a CA or certificate is replaced, its next reconnect
fails. `RotatingChannel` checks the files (at most once a second, at each call) and, once
they changed, makes a new channel for every later call. Calls already running keep the
old channel, which is closed `RETIRE_AFTER` seconds later (a stream still on it then ends,
and its owner reopens it, as after any broken connection).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import grpc

if TYPE_CHECKING:
    from dref.wire.tls import TlsMaterial

logger = logging.getLogger("dref.tls")

CHECK_INTERVAL = 1.0
"""Seconds between two looks at the files' stamps."""

RETIRE_AFTER = 60.0
"""Seconds a replaced channel stays open for the calls that were running on it."""

Subscriber = Callable[[grpc.ChannelConnectivity], None]


class RotatingChannel(grpc.Channel):
    """See the module doc. `expected_name` overrides the name the node's certificate must
    carry (default: the host dialed)."""

    def __init__(
        self,
        material: TlsMaterial,
        address: str,
        options: Sequence[tuple[str, Any]] = (),
        expected_name: str = "",
    ) -> None:
        self._material = material
        self._address = address
        self._options = [*options]
        if expected_name:
            self._options.append(("grpc.ssl_target_name_override", expected_name))
        self._lock = threading.Lock()
        self._stamp, self._channel = self._open()
        self._checked = time.monotonic()
        self._retired: list[tuple[float, grpc.Channel]] = []
        self._subscribers: list[tuple[Subscriber, bool]] = []
        self._closed = False

    def _open(self) -> tuple[object, grpc.Channel]:
        loaded = self._material.current()
        credentials = grpc.ssl_channel_credentials(loaded.ca, loaded.key, loaded.cert)
        return loaded.stamp, grpc.secure_channel(self._address, credentials, self._options)

    def current(self) -> grpc.Channel:
        """The channel for a new call: a new one once the TLS files changed."""
        now = time.monotonic()
        expired: list[grpc.Channel] = []
        with self._lock:
            if not self._closed and now - self._checked >= CHECK_INTERVAL:
                self._checked = now
                if self._material.current().stamp != self._stamp:
                    self._replace(now)
                while self._retired and now - self._retired[0][0] >= RETIRE_AFTER:
                    expired.append(self._retired.pop(0)[1])
            channel = self._channel
        for old in expired:
            old.close()
        return channel

    def _replace(self, now: float) -> None:
        old = self._channel
        for callback, _ in self._subscribers:
            old.unsubscribe(callback)
        self._stamp, self._channel = self._open()
        for callback, try_to_connect in self._subscribers:
            self._channel.subscribe(callback, try_to_connect)
        self._retired.append((now, old))
        logger.info("TLS files changed: new connections to %s use them", self._address)

    # -- grpc.Channel

    def subscribe(self, callback: Subscriber, try_to_connect: bool = False) -> None:
        with self._lock:
            self._subscribers.append((callback, try_to_connect))
            self._channel.subscribe(callback, try_to_connect)

    def unsubscribe(self, callback: Subscriber) -> None:
        with self._lock:
            self._subscribers = [s for s in self._subscribers if s[0] is not callback]
            self._channel.unsubscribe(callback)

    def unary_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _Bound(self, "unary_unary", method, args, kwargs)

    def unary_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _Bound(self, "unary_stream", method, args, kwargs)

    def stream_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _Bound(self, "stream_unary", method, args, kwargs)

    def stream_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _Bound(self, "stream_stream", method, args, kwargs)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            channels = [self._channel, *(old for _, old in self._retired)]
            self._retired = []
        for channel in channels:
            channel.close()

    def __enter__(self) -> RotatingChannel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Bound:
    """A method of a `RotatingChannel`: each invocation goes to its current channel."""

    def __init__(
        self,
        owner: RotatingChannel,
        kind: str,
        method: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        self._owner = owner
        self._kind = kind
        self._method = method
        self._args = args
        self._kwargs = kwargs
        self._made: tuple[grpc.Channel, Any] | None = None

    def _callable(self) -> Any:
        channel = self._owner.current()
        made = self._made
        if made is None or made[0] is not channel:
            made = self._made = (
                channel,
                getattr(channel, self._kind)(self._method, *self._args, **self._kwargs),
            )
        return made[1]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._callable()(*args, **kwargs)

    def future(self, *args: Any, **kwargs: Any) -> Any:
        return self._callable().future(*args, **kwargs)

    def with_call(self, *args: Any, **kwargs: Any) -> Any:
        return self._callable().with_call(*args, **kwargs)
