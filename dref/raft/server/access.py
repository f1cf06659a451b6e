"""Who may call what on a node with TLS: each client call needs a role (`read` < `write`
< `admin`, see `dref.wire.tls`), and peer calls need a node certificate (the servicer
checks its name against the sender each message claims).

Without TLS there are no identities and every call is allowed: the cluster trusts its
network, as the README says. Connections on the node's Unix socket have no certificate
either; the socket file's permissions guard them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import grpc

from dref.wire.call_refused import CallRefused
from dref.wire.consensus_codec import CONSENSUS_SERVICE, NATIVE_SERVICE
from dref.wire.tls import ROLES, Identity, grpc_identity

_PACKAGE = "io.github.tobia80"
_CLIENT_ROLES: dict[str, str] = {
    **{f"/{_PACKAGE}.DRefRaft/{m}": "read" for m in ("GetElement", "GetEndpoints")},
    **{
        f"/{_PACKAGE}.DRefRaft/{m}": "write"
        for m in (
            "SetElement",
            "SetElementIfNotExist",
            "DeleteElement",
            "ExpireElement",
            "SendCommand",
        )
    },
    **{
        f"/{_PACKAGE}.DRefNative/{m}": "read"
        for m in ("Get", "History", "Watch", "Status", "Pipeline")
    },
    **{
        f"/{_PACKAGE}.DRefNative/{m}": "write"
        for m in (
            "Set",
            "SetIfAbsent",
            "Delete",
            "CompareAndSet",
            "CompareAndDelete",
            "ExpireIf",
            "Increment",
        )
    },
    **{f"/{NATIVE_SERVICE}/{m}": "admin" for m in ("TransferLeadership", "ChangeMembership")},
}
"""The role each client-facing gRPC method needs (a Pipeline checks each call it carries)."""

_PEER_SERVICES = (f"/{CONSENSUS_SERVICE}/", f"/{NATIVE_SERVICE}/")
"""Peer methods: any certificate of the cluster CA reaches the servicer, which checks the
certificate names the node each message claims to come from."""


class Access:
    """The node's access rules: `roles` maps a client certificate's name to its role
    (taking precedence over the role its certificate states); a certificate naming a node
    of the cluster (`is_node`) may make every call, since a node can already do more
    through consensus (and `dref.raft()` calls its own node with the node's certificate)."""

    def __init__(self, roles: Mapping[str, str], is_node: Callable[[str], bool]) -> None:
        for name, role in roles.items():
            if role not in ROLES:
                raise ValueError(f"role of {name!r} must be one of {', '.join(ROLES)}: {role!r}")
        self.roles = dict(roles)
        self._is_node = is_node

    def refusal(self, identity: Identity | None, needed: str) -> str | None:
        """Why `identity` may not make a call that needs role `needed` (None: it may)."""
        if identity is None or any(self._is_node(name) for name in identity.names):
            return None
        role = self.roles.get(identity.name, identity.certificate_role)
        if role is None:
            return (
                f"identity {identity.name!r} has no role; this call needs {needed!r}"
                " (give it one in the node's roles, or issue its certificate with --role)"
            )
        if ROLES.index(role) < ROLES.index(needed):
            return f"identity {identity.name!r} has role {role!r}; this call needs {needed!r}"
        return None

    def check(self, identity: Identity | None, needed: str) -> None:
        """Raise CallRefused(PERMISSION_DENIED) naming the identity and the missing role."""
        reason = self.refusal(identity, needed)
        if reason is not None:
            raise CallRefused(grpc.StatusCode.PERMISSION_DENIED, reason)

    def interceptor(self) -> grpc.ServerInterceptor:
        """Checks every client-facing gRPC call's role before its handler runs."""
        return _RoleInterceptor(self)


def call_role(kind: str) -> str:
    """The role a pipelined call of operation `kind` needs."""
    return "read" if kind in ("get", "history") else "write"


class _RoleInterceptor(grpc.ServerInterceptor):
    def __init__(self, access: Access) -> None:
        self._access = access

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        needed = _CLIENT_ROLES.get(method)
        if handler is None or (needed is None and method.startswith(_PEER_SERVICES)):
            return handler
        return _guarded(handler, self._access, needed or "admin")


def _guarded(handler: grpc.RpcMethodHandler, access: Access, needed: str) -> Any:
    """`handler` with a role check in front of whichever behaviour it has."""

    def guard(behaviour: Callable[..., Any]) -> Callable[..., Any]:
        def checked(request: Any, context: grpc.ServicerContext) -> Any:
            reason = access.refusal(grpc_identity(context), needed)
            if reason is not None:
                context.abort(grpc.StatusCode.PERMISSION_DENIED, reason)
            return behaviour(request, context)

        return checked

    kinds = (
        ("unary_unary", grpc.unary_unary_rpc_method_handler),
        ("unary_stream", grpc.unary_stream_rpc_method_handler),
        ("stream_unary", grpc.stream_unary_rpc_method_handler),
        ("stream_stream", grpc.stream_stream_rpc_method_handler),
    )
    for attribute, make in kinds:
        behaviour = getattr(handler, attribute)
        if behaviour is not None:
            return make(
                guard(behaviour),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
    return handler
