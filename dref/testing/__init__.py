"""Test harnesses shipped with dref: the deterministic Raft simulator and a linearizability
checker for key/value histories."""
