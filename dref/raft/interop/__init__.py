"""Interop mode: a node that speaks upstream DRef's consensus protocol exactly (spec
section 4), so it can join a Scala or Rust DRef Raft cluster."""
