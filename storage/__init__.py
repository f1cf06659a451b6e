"""Persistence: the shared file formats (voter-state, state-snapshot, command-log) and LMDB indexes."""
