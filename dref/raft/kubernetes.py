"""Peers from a Kubernetes Endpoints object, as upstream's Kubernetes IP provider finds them
(`DREF_K8S_SERVICE` / `DREF_K8S_NAMESPACE`, spec 1.7 and 4.9): the ready addresses of
every subset, read from the API server with the pod's service-account token.

A service is named `k8s://NAMESPACE/SERVICE` wherever DNS names of `DREF_NODE_SERVICES` go,
so the same polls (native discovery, interop's peer map) follow it.
"""

from __future__ import annotations

import json
import os
import ssl
import urllib.error
import urllib.request
from pathlib import Path

from dref.errors import ConfigError

__all__ = ["K8S_SCHEME", "SERVICE_ACCOUNT", "endpoint_ips", "k8s_service_name"]

K8S_SCHEME = "k8s://"
SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
"""Where Kubernetes mounts a pod's token, CA certificate and namespace."""


def k8s_service_name(service: str, namespace: str | None) -> str:
    """`k8s://NAMESPACE/SERVICE`; without a namespace, the pod's own (else "default")."""
    if not namespace:
        namespace_file = SERVICE_ACCOUNT / "namespace"
        namespace = namespace_file.read_text().strip() if namespace_file.exists() else "default"
    return f"{K8S_SCHEME}{namespace}/{service}"


def endpoint_ips(
    name: str,
    *,
    api: str | None = None,
    account: Path = SERVICE_ACCOUNT,
    timeout: float = 5.0,
) -> list[str]:
    """The ready addresses of the Endpoints object `name` (`k8s://NAMESPACE/SERVICE`), in
    the API's order; ConfigError naming the object and the cause when it cannot be read."""
    namespace, _, service = name.removeprefix(K8S_SCHEME).partition("/")
    if not namespace or not service:
        raise ConfigError(f"{name!r} is not k8s://NAMESPACE/SERVICE")
    what = f"Kubernetes Endpoints {namespace}/{service}"
    if api is None:
        host = os.environ.get("KUBERNETES_SERVICE_HOST", "")
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        if not host:
            raise ConfigError(
                f"cannot read {what}: KUBERNETES_SERVICE_HOST is not set (not in a pod?)"
            )
        api = f"https://{host}:{port}"
    try:
        token = (account / "token").read_text().strip()
        context = ssl.create_default_context(cafile=str(account / "ca.crt"))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot read {what}: no service-account credentials: {exc}") from None
    request = urllib.request.Request(
        f"{api}/api/v1/namespaces/{namespace}/endpoints/{service}",
        headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, context=context, timeout=timeout) as response:
            body = json.load(response)
    except urllib.error.HTTPError as exc:
        raise ConfigError(f"cannot read {what}: the API server answered {exc.code}") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {what}: {exc}") from None
    ips = [
        str(address["ip"])
        for subset in body.get("subsets") or ()
        for address in subset.get("addresses") or ()  # ready ones; notReadyAddresses apart
        if "ip" in address
    ]
    return list(dict.fromkeys(ips))
