"""`InteropNode`: one node of an upstream DRef Raft cluster, started from a `NodeConfig`
with `interop=True` (what `dref node --interop` runs)."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import grpc

from dref.errors import ConfigError
from dref.raft.config import (
    NodeConfig,
    check_bindable,
    resolve_service,
    service_peers,
    split_address,
)
from dref.raft.interop.engine import InteropEngine, InteropTimings
from dref.raft.interop.service import add_interop_services
from dref.storage.data_dir_lock import DataDirLock
from dref.storage.node_identity import FILE_NAME as IDENTITY_FILE
from dref.wire.consensus_service import CHANNEL_OPTIONS

__all__ = ["InteropNode"]

_log = logging.getLogger("dref.interop")
_GRPC_WORKERS = 32


class InteropNode:
    """Serves `DRefConsensus` and `DRefRaft` on `config.listen` (plaintext, as upstream)
    and runs the engine's driver loop and TTL reaper until `close()`."""

    def __init__(self, config: NodeConfig) -> None:
        if not config.interop:
            raise ConfigError("InteropNode needs NodeConfig(interop=True)")
        self.node_id = config.node_id
        self._data_lock = DataDirLock(config.data_dir, lock_file=False)
        self._server: grpc.Server | None = None
        try:
            if (config.data_dir / IDENTITY_FILE).exists():
                raise ConfigError(
                    f"data directory {config.data_dir} belongs to a native-mode node (it has"
                    f" {IDENTITY_FILE}); give the interop node a directory of its own"
                )
            check_bindable(config.listen)
            timings = InteropTimings(
                election_timeout=config.election_timeout,
                heartbeat_interval=config.heartbeat_interval,
                rpc_timeout=min(config.rpc_timeout, config.election_timeout),
            )
            self.engine = InteropEngine(
                config.node_id,
                dict(config.peers),
                config.data_dir,
                timings=timings,
                snapshot_every=config.snapshot_every,
            )
            executor = ThreadPoolExecutor(
                _GRPC_WORKERS, thread_name_prefix=f"dref-interop-grpc-{config.node_id}"
            )
            options = [*CHANNEL_OPTIONS, ("grpc.so_reuseport", 0)]  # snapshots may be large
            self._server = grpc.server(executor, options=options)
            add_interop_services(self.engine, self._server)
            port = self._server.add_insecure_port(config.listen)
            if port == 0:
                raise ConfigError(f"cannot listen on {config.listen}")
            host, _ = split_address(config.listen, "listen")
            self.address = f"{host}:{port}"
            self._server.start()
            self.engine.start()
            self._stop = threading.Event()
            self._discovery: threading.Thread | None = None
            if config.node_services:
                self._discovery = threading.Thread(
                    target=self._follow_dns,
                    args=(config,),
                    name=f"dref-interop-dns-{config.node_id}",
                    daemon=True,
                )
                self._discovery.start()
        except BaseException:
            self._data_lock.release()
            raise
        _log.info("interop node %s serving on %s", self.node_id, self.address)

    def _follow_dns(self, config: NodeConfig) -> None:
        """Upstream's address poll: every `address_poll_interval`, the peers are the
        addresses `node_services` resolve to now (id = IP), plus the configured peers no
        name gave; a name that fails keeps its last answer (logged once)."""
        host, port = split_address(config.listen, "listen")
        answers: dict[str, list[str]] = {}
        failing: set[str] = set()
        static = dict(config.peers)
        first = True
        while not self._stop.wait(0 if first else config.address_poll_interval):
            for name in config.node_services:
                try:
                    answers[name] = resolve_service(name)
                    failing.discard(name)
                except ConfigError as exc:
                    if name not in failing:
                        _log.warning("%s; keeping its last answer", exc)
                        failing.add(name)
            resolved = service_peers([ip for ips in answers.values() for ip in ips], port, host)
            if first:  # what the names gave at start is theirs to take away
                static = {peer: a for peer, a in static.items() if peer not in resolved}
                first = False
            self.engine.replace_peers({**static, **resolved})

    def close(self) -> None:
        """Stop serving and the engine's threads; idempotent."""
        if self._server is not None:
            self._stop.set()
            if self._discovery is not None:
                self._discovery.join(timeout=5)
            self._server.stop(grace=0.5).wait()
            self._server = None
            self.engine.close()
            self._data_lock.release()
