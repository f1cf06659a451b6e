"""Feature flags: a dataclass of flags in one DRef; every worker reacts to changes.

An operator flips flags with `update`; each worker keeps its own copy current through an
`on_change` subscription (its callback runs on its own thread, so a slow worker never
slows the operator). A worker that fell behind (`Lagged`) simply re-reads the flags.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace

from _common import open_context, say

import dref


@dataclass(frozen=True)
class Flags:
    dark_mode: bool
    new_checkout: bool
    rate_limit: int


class Worker:
    """Holds the flags it last saw; `seen_version` tells the demo when it is up to date."""

    def __init__(self, name: str, flags: dref.DRef[Flags]) -> None:
        self.name = name
        self.ref = flags
        self.updated = threading.Condition()
        self.subscription = flags.on_change(self.on_change)  # before reading: miss nothing
        with self.updated:
            self.current = flags.get()

    def on_change(self, event: dref.Event[Flags]) -> None:
        if isinstance(event, dref.Changed):
            flags = event.value
        elif isinstance(event, dref.Lagged):
            flags = self.ref.get()
        else:
            return
        with self.updated:
            self.current = flags
            self.updated.notify_all()
        say(f"{self.name} sees {flags}")

    def wait_for(self, wanted: Flags, timeout: float) -> bool:
        with self.updated:
            return self.updated.wait_for(lambda: self.current == wanted, timeout)


def main() -> None:
    ctx, _ = open_context(__doc__)
    with ctx:
        flags = ctx.ref("feature-flags", Flags(dark_mode=False, new_checkout=False, rate_limit=10))
        flags.set(Flags(dark_mode=False, new_checkout=False, rate_limit=10))
        workers = [Worker(f"worker-{i}", flags) for i in range(3)]

        flags.update(lambda f: replace(f, dark_mode=True))
        flags.update(lambda f: replace(f, rate_limit=f.rate_limit * 5))
        final = flags.update_and_get(lambda f: replace(f, new_checkout=True))

        if all(w.wait_for(final, timeout=5) for w in workers):
            say(f"all {len(workers)} workers run with {final}")
        for w in workers:
            w.subscription.cancel()


if __name__ == "__main__":
    main()
