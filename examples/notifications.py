"""Notifications: a producer posts events into a DRef; a consumer follows `changes()`.

Each `set` is one notification; every subscriber receives every one, in order. If a
consumer's buffer overflows it gets a `Lagged` marker instead of the dropped ones and can
resynchronise by reading the current value. Iteration ends after a quiet second.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from _common import open_context, say

import dref

NOTICES = 5


@dataclass(frozen=True)
class Notice:
    seq: int
    text: str


def main() -> None:
    ctx, _ = open_context(__doc__)
    with ctx:
        inbox = ctx.ref("notifications:inbox", Notice(0, "start"))
        stream = inbox.changes(timeout=1.0)  # subscribe before the producer starts
        received: list[Notice] = []

        def consume() -> None:
            with stream:
                for event in stream:
                    if isinstance(event, dref.Changed):
                        received.append(event.value)
                        say(f"consumer got #{event.value.seq}: {event.value.text}")
                    elif isinstance(event, dref.Lagged):
                        say(f"consumer missed {event.missed}; now at {inbox.get()}")
                    elif isinstance(event, dref.Deleted):
                        say("consumer: inbox closed")
                        return

        consumer = threading.Thread(target=consume, name="consumer")
        consumer.start()
        for seq in range(1, NOTICES + 1):
            inbox.set(Notice(seq, f"order {1000 + seq} shipped"))
        inbox.delete()
        consumer.join()
        say(f"delivered {len(received)} of {NOTICES} notifications in order: "
              f"{[n.seq for n in received] == list(range(1, NOTICES + 1))}")


if __name__ == "__main__":
    main()
