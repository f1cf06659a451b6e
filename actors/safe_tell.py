"""Sending to an actor that may already have stopped (during close) without raising."""

from __future__ import annotations

from typing import Any

import pykka


def safe_tell(ref: pykka.ActorRef[Any] | None, message: object) -> bool:
    """Tell `ref` the message; False when there is no actor or it has stopped."""
    if ref is None:
        return False
    try:
        ref.tell(message)
    except pykka.ActorDeadError:
        return False
    return True
