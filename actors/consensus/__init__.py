"""The pure Raft role logic: events in, effects out; no threads, sockets or clock."""
