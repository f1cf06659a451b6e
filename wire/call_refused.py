"""The one exception for a request refused before it runs, carrying the gRPC status."""

from __future__ import annotations

import grpc


class CallRefused(Exception):
    """A request refused before it runs (bad bytes, unknown sender, empty name, value too
    large, ...): the status code and details the caller gets, whether as an aborted unary
    call, an aborted stream, or one pipelined call's CallError."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details
