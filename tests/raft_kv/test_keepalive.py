"""A client that vanishes without closing its connection (a stopped process, a host gone
from the network) gives its pipeline's server thread back within the keepalive interval
(`dref node --keepalive-ms`)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from polling import wait_for

from dref.raft.client import Client

CLIENT = """
import sys, time
from dref.raft.client import Client
client = Client([sys.argv[1]], timeout=10)
client.get("k")  # opens the pipeline
print("ready", flush=True)
time.sleep(120)
"""


def test_a_stopped_clients_pipeline_is_dropped(make_cluster):
    cluster = make_cluster(1, heartbeat_ms=50, election_ms=1000, keepalive_ms=1000)
    address = cluster.addresses[cluster.leader()]
    client = subprocess.Popen([sys.executable, "-c", CLIENT, address], stdout=subprocess.PIPE)
    assert client.stdout is not None
    try:
        with Client([address], timeout=10) as observer:  # its status calls are unary

            def open_pipelines() -> int:
                return int(observer.status(address)["pipelines"]["open"])

            assert client.stdout.readline().strip() == b"ready"
            wait_for(lambda: open_pipelines() == 1, 30, "the pipeline opens")
            os.kill(client.pid, signal.SIGSTOP)  # it can no longer answer the node's pings
            wait_for(lambda: open_pipelines() == 0, 15, "the pipeline ends")
    finally:
        client.kill()
        client.wait(30)
        client.stdout.close()
