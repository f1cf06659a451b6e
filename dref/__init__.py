"""dref-py: distributed references, locks and change streams for synchronous Python."""
