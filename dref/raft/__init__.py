"""The embedded Raft engine: `dref.raft.Node` runs a node in this process, `dref.raft.Client`
talks to a cluster, and calling `dref.raft(...)` itself gives a DRef context on a node.

The module is callable so that both `dref.raft(...)` (the house plan's context factory)
and `dref.raft.Node` (the engine) read naturally.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from dref.contracts.state_machine import BatchStateMachine, StateMachine, StreamingStateMachine
from dref.raft.client import Client
from dref.raft.config import NodeConfig
from dref.raft.node import Node
from dref.raft.status import NodeMetrics, NodeStatus

__all__ = [
    "BatchStateMachine",
    "Client",
    "Node",
    "NodeConfig",
    "NodeMetrics",
    "NodeStatus",
    "StateMachine",
    "StreamingStateMachine",
]


class _CallableModule(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # The context factory belongs to the public layer above this package; the parent
        # package (always imported before this one) hands it out without an upward import.
        return sys.modules["dref"].embedded_raft_context(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
