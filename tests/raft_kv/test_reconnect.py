"""A peer that was down for a while is reached again within a second of its return.

gRPC's default reconnect backoff grows to 120 s: after 18 s of failed attempts the next one
can be 4 to 10 s away, and the leader's entries, heartbeats and votes meanwhile go nowhere.
`dref.wire.reconnect` caps the backoff at 0.5 s.
"""

from __future__ import annotations

import time

from polling import wait_for

DOWN = 18.0
"""Long enough that gRPC's default backoff would put its next attempt >= 4 s away."""


def test_the_leader_replicates_to_a_returning_peer_at_once(make_kv_cluster, cmd):
    cluster = make_kv_cluster(3)
    leader = cluster.leader()
    absent = next(n for n in cluster.nodes if n != leader.node_id)
    cluster.stop(absent)
    time.sleep(DOWN)  # the fault itself: the peer stays down this long
    leader.node.propose(cmd.set_("k", b"v"), timeout=10)  # commits on the other two
    last = leader.status().last_index
    cluster.start(absent)
    returned = time.monotonic()
    wait_for(lambda: leader.status().match_indexes.get(absent, 0) >= last, 30, "catch-up")
    took = time.monotonic() - returned
    assert took < 3.0, f"the leader reached its returning peer {took:.1f} s after its return"
