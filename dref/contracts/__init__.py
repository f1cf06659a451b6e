"""Contracts shared across the layers: the `StateMachine` protocol, change events, read
policies and lock counters. Modules here import nothing from the project but `dref.errors`
and each other, so any layer may use them (see docs/write-path.md and
tests/packaging/test_layers.py)."""
