"""Operator RPCs on DRefNativeConsensus: leadership transfer and membership changes.

Served by every node for `dref transfer-leader` and `dref members`; a follower answers
`not_leader` with the leader's address so the caller can go there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import grpc
from google.protobuf.message import Message

from dref.errors import (
    DRefError,
    DRefTimeoutError,
    LeaderTransferError,
    MembershipError,
    NotLeaderError,
)
from dref.wire.consensus_codec import NATIVE_SERVICE
from dref.wire.proto import dref_consensus_pb2 as pb

if TYPE_CHECKING:
    from dref.raft.node import Node

_DEFAULT_TIMEOUT = 30.0


def admin_handlers(node: Node) -> grpc.GenericRpcHandler:
    """The TransferLeadership and ChangeMembership handlers of `node`."""
    methods = {
        "TransferLeadership": _unary(node, pb.TransferLeadershipRequest, _transfer),
        "ChangeMembership": _unary(node, pb.MembershipRequest, _membership),
    }
    return grpc.method_handlers_generic_handler(NATIVE_SERVICE, methods)


def _unary(
    node: Node, request_type: type[Message], serve: Callable[[Node, object], object]
) -> grpc.RpcMethodHandler:
    return grpc.unary_unary_rpc_method_handler(
        lambda request, context: serve(node, request),
        request_deserializer=request_type.FromString,
        response_serializer=lambda m: m.SerializeToString(),
    )


def _error_fields(exc: DRefError) -> dict[str, str]:
    """error_kind, error and leader_hint for a failed admin call."""
    if isinstance(exc, NotLeaderError):
        return {
            "error_kind": "not_leader",
            "error": str(exc),
            "leader_hint": exc.leader_address or "",
        }
    if isinstance(exc, LeaderTransferError | MembershipError):
        return {"error_kind": "refused", "error": str(exc)}
    if isinstance(exc, DRefTimeoutError):
        return {"error_kind": "timeout", "error": str(exc)}
    return {"error_kind": "unavailable", "error": str(exc)}


def _transfer(node: Node, request: object) -> pb.TransferLeadershipResponse:
    assert isinstance(request, pb.TransferLeadershipRequest)
    try:
        leader = node.transfer_leadership(request.target or None, timeout=request.timeout or None)
    except DRefError as exc:
        return pb.TransferLeadershipResponse(**_error_fields(exc))
    return pb.TransferLeadershipResponse(leader_id=leader)


def _membership(node: Node, request: object) -> pb.MembershipResponse:
    assert isinstance(request, pb.MembershipRequest)
    timeout = request.timeout or _DEFAULT_TIMEOUT
    try:
        if request.action == "add_learner":
            node.add_learner(request.node_id, request.address, timeout=timeout)
        elif request.action == "add_voter":
            node.add_voter(request.node_id, request.address, timeout=timeout)
        elif request.action == "promote":
            node.promote(request.node_id, timeout=timeout)
        elif request.action == "remove":
            node.remove(request.node_id, timeout=timeout)
        elif request.action != "list":
            return pb.MembershipResponse(
                error_kind="refused", error=f"unknown action {request.action!r}"
            )
        view = node.members().membership
    except DRefError as exc:
        return pb.MembershipResponse(**_error_fields(exc))  # type: ignore[arg-type]
    addresses = view.address_map()
    members = [
        pb.Member(node_id=member, address=addresses.get(member, ""), voter=member in view.voters)
        for member in sorted(view.members)
    ]
    return pb.MembershipResponse(members=members)
