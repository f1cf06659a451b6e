"""Test harnesses shipped with dref: the deterministic Raft simulator and the linearizability checker."""
