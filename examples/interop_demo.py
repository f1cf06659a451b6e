"""The cross-language demo (spec 1.8) in Python: chat through one DRef shared with Scala and
Rust DRef nodes.

Every participant opens the DRef `interop-chat-message` holding `DRefMessage(name, message)`
(a two-entry MsgPack map, in that key order, as upstream's record codec writes it), seeded
with both fields empty; every `--interval-ms` (default 3000, the first send delayed by
djb2(HOSTNAME or label) mod the interval, as upstream's demo does) it writes
`{name: "<DREF_AUTO_NAME>-<first 6 chars of HOSTNAME>", message: "hello @..."}` and prints
every change whose name is not empty and not its own.

Run it as a node of the cluster, configured as upstream's demo nodes are
(`DREF_NODE_SERVICES=dref-interop` or `DREF_NODE_ADDRESSES`, `DREF_PORT`, default 8082):

    DREF_NODE_ADDRESSES=10.0.0.5,10.0.0.6 python examples/interop_demo.py --bind-host 10.0.0.5

or as a client of a running interop cluster (`dref node --interop` nodes, or upstream's):

    python examples/interop_demo.py --connect 127.0.0.1:7001,127.0.0.1:7002 --rounds 5
"""

from __future__ import annotations

import argparse
import itertools
import os
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import dref

NAME = "interop-chat-message"


@dataclass(frozen=True)
class DRefMessage:
    name: str
    message: str


def djb2(text: str) -> int:
    """Upstream's demo hash (h = h * 33 + c from 5381, wrapping at 64 bits)."""
    value = 5381
    for byte in text.encode():
        value = (value * 33 + byte) % 2**64
    return value


def open_context(args: argparse.Namespace) -> dref.Context:
    """A client of `--connect`, else a node of its own configured from DREF_*."""
    if args.connect:
        return dref.raft_client(args.connect.split(","), interop=True)
    from dref.raft.config import NodeConfig

    data_dir = Path(args.data_dir or tempfile.mkdtemp(prefix="dref-interop-demo-"))
    config = NodeConfig.from_env(data_dir, bind_host=args.bind_host, node_id=args.node_id)
    return dref.raft(
        node_id=config.node_id,
        listen=config.listen,
        peers=dict(config.peers),
        data_dir=data_dir,
        interop=True,
        isolate=False,  # the node in this process: its applied changes feed on_change
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connect", default="", help="HOST:PORT,... of an interop cluster")
    parser.add_argument("--bind-host", default="127.0.0.1", help="own IP as a node")
    parser.add_argument("--node-id", help="own node id as a node (default: the IP)")
    parser.add_argument("--data-dir", help="the node's files (default: a temporary dir)")
    parser.add_argument("--label", default=os.environ.get("DREF_NODE_LABEL", ""))
    parser.add_argument(
        "--interval-ms",
        type=int,
        default=int(os.environ.get("DREF_AUTO_INTERVAL_SECS", "3")) * 1000,
    )
    parser.add_argument("--rounds", type=int, default=0, help="stop after N sends (0: never)")
    parser.add_argument(
        "--linger-ms", type=int, default=1000, help="keep listening this long after the last send"
    )
    args = parser.parse_args()

    host = os.environ.get("HOSTNAME") or args.label or socket.gethostname()
    me = f"{os.environ.get('DREF_AUTO_NAME', 'python')}-{host[:6]}"
    with open_context(args) as ctx:
        chat = ctx.ref(NAME, DRefMessage("", ""))

        def show(event: dref.Event[DRefMessage]) -> None:
            if isinstance(event, dref.Changed) and event.value.name not in ("", me):
                print(f"{me} got from {event.value.name}: {event.value.message}", flush=True)

        with chat.on_change(show):
            time.sleep((djb2(args.label or host) % args.interval_ms) / 1000)
            for sent in itertools.count(1):
                chat.set(DRefMessage(me, f"hello @{sent} from Python"))
                print(f"{me} sent hello @{sent}", flush=True)
                if args.rounds and sent >= args.rounds:
                    break
                time.sleep(args.interval_ms / 1000)
            time.sleep(args.linger_ms / 1000)  # the others' last changes may still come


if __name__ == "__main__":
    main()
