"""Test tooling that the wheel does not ship: the deterministic Raft simulator, the
multi-process cluster harness, the fault proxy, and the linearizability checker."""
