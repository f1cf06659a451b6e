"""dref-py's Raft vs PySyncObj vs etcd: writes and reads on 3-member loopback clusters.

Run from a fresh clone with one command (it creates .venv, installs the `bench` extra and,
as root, the Debian etcd-server package; etcd rows are skipped without it):

    bash scripts/dev.sh bench [--seconds 3] [--only raft,raft_client,etcd,pysyncobj]
    bash scripts/dev.sh bench --engine [--seconds 3] [--only dref,pysyncobj,etcd]

Each system runs alone, one after the other, on 127.0.0.1 with fsync on.

The default table measures what users get: callers are threads of one application process
(`app` below, a child of this script) calling the public API on 1,000 keys of 256-byte
values, the refs made before timing. Rows: set (1 and 32 callers), linearizable get (32),
lease get (1) and `update(lambda n: n + 1)` on one key from 16 threads (checked: the
counter must grow by exactly the number of calls). Systems:

* `dref.raft()`: the app embeds member n1 with `dref.raft(...)` (isolate=True: a child
  `dref node`; the shortest election timeout, so it normally leads; the table says who
  led) beside two `dref node` processes; callers use `DRef.set` / `DRef.get` / `update`.
* `dref.raft_client()`: the app is only a client of three `dref node` processes.
* etcd: 3 members; the app holds one gRPC channel to the leader: Put, Range, serializable
  Range for the lease row, and a Txn compare-and-swap loop on mod_revision for update.
* PySyncObj with `appendEntriesUseBatch=False`: callers are threads of the leader process
  (it has no client protocol), update is a replicated add, no linearizable get.

Besides ops/s and p50/p99 latency it prints CPU per call of the caller process and of the
3 member processes (utime + stime deltas from /proc/<pid>/stat), and ratios to etcd.

`--engine` prints the older engine-level table instead:

* dref: 3 members; one is a `KeyValueNode` inside this process (made leader by giving it the
  shortest election timeout), two are `dref node` processes. "embedded" callers are threads
  of this process calling `Node.propose` / `Node.read`; "network" callers are threads spread
  over 4 client processes using `dref.raft.Client` (gRPC to the leader).
* PySyncObj: 3 processes with a journal file, once with `appendEntriesUseBatch=False` and
  once with its defaults; callers are threads inside the leader's process (PySyncObj has no
  client protocol). Its journal is an mmap it never msyncs/fsyncs, and it has no
  linearizable read: its "lease read" is a local read of the leader's dict.
* etcd: 3 members (`/usr/bin/etcd`), driven through its gRPC KV API (`etcd_proto/`,
  compiled with grpc_tools at start) from 4 client processes aimed at the leader; its
  "lease read" is a serializable Range (local to the leader, not linearizable).

Every row runs for `--seconds`; numbers on a shared 2-core box are noisy: repeat and compare
within one run. No assertions: it prints tables.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

HERE = Path(__file__).resolve().parent
KEYS = 1000
VALUE = b"v" * 100
CLIENT_PROCESSES = 4
SAMPLES = 100_000
"""Latencies kept per caller thread (the most recent ones)."""
ETCD = shutil.which("etcd") or "/usr/bin/etcd"
WORKLOADS = (
    ("write", 1, "writes, 1 caller"),
    ("write", 32, "writes, 32 callers"),
    ("read_lin", 32, "linearizable reads, 32"),
    ("read_lease", 1, "lease reads, 1 caller"),
    ("read_lease", 32, "lease reads, 32 callers"),
)
Call = Callable[[int, int], object]
API_KEYS = 1000
API_VALUE = b"v" * 256
API_WORKLOADS = (
    ("set", 1, "set 1 caller"),
    ("set", 32, "set 32 callers"),
    ("get_lin", 32, "get linearizable 32"),
    ("get_lease", 1, "get lease 1 caller"),
    ("update", 16, "update +1 16 threads one key"),
    ("increment", 16, "increment 16 threads one key"),
)
API_NAMES = {
    "raft": "dref.raft()",
    "raft_client": "dref.raft_client()",
    "etcd": "etcd",
    "pysyncobj": "PySyncObj no-batch",
}
GRPC_PEER_NAMES = {
    "raft_grpc": "dref.raft() gRPC",
    "raft_client_grpc": "raft_client() gRPC",
}
"""The dref systems with nodes replicating over gRPC streams instead of the socket
protocol (`--only raft,raft_grpc` compares the two in one run)."""
TLS_NAMES = {"raft_client_tls": "raft_client() TLS"}
"""The dref system with mutual TLS on every link and client (`--only raft_client,
raft_client_tls` shows what TLS costs)."""
ALL_NAMES = {**API_NAMES, **GRPC_PEER_NAMES, **TLS_NAMES}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Stats:
    """One row of one system: throughput, latency percentiles (us), errors."""

    ops_s: float
    p50_us: float
    p99_us: float
    count: int
    errors: int


# ----------------------------------------------------------------------------- measuring


def run_callers(call: Call, threads: int, seconds: float) -> dict[str, Any]:
    """Run `call(worker, i)` in `threads` threads for `seconds`; latencies (us) and errors."""
    latencies: list[list[float]] = [[] for _ in range(threads)]
    counts = [0] * threads
    errors = [0] * threads
    deadline = time.perf_counter() + seconds

    def loop(worker: int) -> None:
        mine = latencies[worker]
        for i in range(10_000_000):
            started = time.perf_counter()
            if started >= deadline:
                return
            try:
                call(worker, i)
            except Exception:  # noqa: BLE001 - counted and reported in the table
                errors[worker] += 1
                time.sleep(0.01)
                continue
            took = round((time.perf_counter() - started) * 1e6, 1)
            if len(mine) < SAMPLES:
                mine.append(took)
            else:  # keep the latest SAMPLES latencies: bounded memory and output
                mine[counts[worker] % SAMPLES] = took
            counts[worker] += 1

    started = time.perf_counter()
    workers = [threading.Thread(target=loop, args=(w,), daemon=True) for w in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(timeout=seconds + 30)
    elapsed = time.perf_counter() - started
    return {
        "lat": [x for part in latencies for x in part],
        "count": sum(counts),
        "errors": sum(errors),
        "elapsed": elapsed,
    }


def summarize(parts: list[dict[str, Any]]) -> Stats:
    """Merge the results of several callers' processes into one Stats."""
    merged = sorted(x for part in parts for x in part["lat"])
    elapsed = max(part["elapsed"] for part in parts)
    errors = sum(part["errors"] for part in parts)
    if not merged:
        return Stats(0.0, 0.0, 0.0, 0, errors)
    count = sum(part["count"] for part in parts)
    p99 = merged[min(len(merged) - 1, int(len(merged) * 0.99))]
    return Stats(count / elapsed, merged[len(merged) // 2], p99, count, errors)


def key(worker: int, i: int) -> str:
    return f"k{worker}-{i % KEYS}"


# ----------------------------------------------------------------------------- children


class Child:
    """A child process we talk to by lines on stdin/stdout; stderr goes to a log file."""

    def __init__(self, command: list[str], log: Path) -> None:
        self.name = " ".join(command[1:3])
        with open(log, "ab") as err:
            self.process = subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err
            )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            self._lines.put(raw.decode(errors="replace").rstrip("\n"))
        self._lines.put(None)

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line.encode() + b"\n")
        self.process.stdin.flush()

    def expect(self, timeout: float) -> str:
        """The next line the child prints (RuntimeError if it exits or stays silent)."""
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"{self.name} silent for {timeout:g} s") from None
        if line is None:
            raise RuntimeError(f"{self.name} exited ({self.process.poll()})")
        return line

    def stop(self) -> None:
        if self.process.stdin is not None:
            try:
                self.process.stdin.close()
            except OSError:
                pass
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


def script(*args: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), *args]


def run_in_processes(
    spec: dict[str, Any], threads: int, seconds: float, logs: Path, processes: int
) -> Stats:
    """Run the workload `spec` from `threads` callers spread over client processes."""
    count = max(1, min(processes, threads))
    shares = [threads // count + (1 if p < threads % count else 0) for p in range(count)]
    children = [
        Child(
            script("worker", json.dumps({**spec, "threads": n, "seconds": seconds})),
            logs / "workers.log",
        )
        for n in shares
    ]
    try:
        for child in children:
            if child.expect(60) != "ready":
                raise RuntimeError("worker did not get ready")
        for child in children:
            child.send("go")
        return summarize([json.loads(child.expect(seconds + 60)) for child in children])
    finally:
        for child in children:
            child.stop()


def worker_main(spec: dict[str, Any]) -> None:
    """A client process: build the caller, say ready, wait for go, run, print the result."""
    call = network_caller(spec)
    for i in range(3):
        call(0, i)  # connect and warm up
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return
    print(json.dumps(run_callers(call, spec["threads"], spec["seconds"])), flush=True)


def network_caller(spec: dict[str, Any]) -> Call:
    """The call a network client makes for `spec` (dref Client or etcd gRPC stubs)."""
    op = spec["op"]
    if spec["system"] == "dref":
        from dref.raft import Client

        client = Client(spec["targets"], timeout=10.0)
        if op == "write":
            return lambda w, i: client.set(key(w, i), VALUE)
        policy = "linearizable" if op == "read_lin" else "lease"
        return lambda w, i: client.get(key(w, i), policy=policy)
    import grpc

    sys.path.insert(0, spec["stubs"])
    import etcd_kv_pb2 as pb
    import etcd_kv_pb2_grpc as pbg

    stub = pbg.KVStub(grpc.insecure_channel(spec["targets"][0]))
    if op == "write":
        return lambda w, i: stub.Put(pb.PutRequest(key=key(w, i).encode(), value=VALUE), timeout=10)
    serializable = op == "read_lease"
    return lambda w, i: stub.Range(
        pb.RangeRequest(key=key(w, i).encode(), serializable=serializable), timeout=10
    )


# ----------------------------------------------------------------------------- dref


@contextmanager
def dref_cluster(directory: Path) -> Iterator[Any]:
    """3 members: a KeyValueNode here (the leader) and two `dref node` processes.

    The embedded node campaigns first (shorter election timeout); when a child still wins
    the race, the cluster is torn down and started afresh (at most 5 times)."""
    for attempt in range(5):
        with _dref_members(directory / f"try{attempt}") as (node, children):
            if _became_leader(node):
                yield node
                return
    raise RuntimeError("the embedded dref node did not become leader in 5 attempts")


@contextmanager
def _dref_members(directory: Path) -> Iterator[tuple[Any, list[Any]]]:
    from dref.raft.config import NodeConfig
    from dref.raft.kv_node import KeyValueNode
    from dref.raft.node_process import NodeProcess, free_ports, node_arguments

    directory.mkdir(parents=True, exist_ok=True)
    ports = free_ports(3)
    addresses = {f"n{i + 1}": f"127.0.0.1:{port}" for i, port in enumerate(ports)}
    children: list[NodeProcess] = []
    node: KeyValueNode | None = None
    try:
        for node_id in ("n2", "n3"):
            peers = {k: v for k, v in addresses.items() if k != node_id}
            arguments = node_arguments(
                node_id, addresses[node_id], peers, directory / node_id, election_ms=3000
            )
            children.append(NodeProcess(arguments, log=directory / f"{node_id}.log"))
        config = NodeConfig(
            node_id="n1",
            listen=addresses["n1"],
            peers={k: v for k, v in addresses.items() if k != "n1"},
            data_dir=directory / "n1",
            election_timeout=1.0,  # the others wait 3 s: this one campaigns first
        )
        node = KeyValueNode(config)
        yield node, children
    finally:
        if node is not None:
            node.close()
        for child in children:
            child.stop()


def _became_leader(kv: Any) -> bool:
    """True once `kv` leads; False when another member does (or nobody within 30 s)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = kv.node.status()
        if status.role == "leader":
            return True
        if status.leader_id is not None:
            return False
        time.sleep(0.05)
    return False


def bench_dref(seconds: float, logs: Path) -> tuple[dict[str, Stats], dict[str, Stats], str]:
    """Embedded and network rows for dref, plus a line of leader storage metrics."""
    from dref.wire.client_protocol import now_ms
    from dref.wire.proto import dref_native_pb2 as native
    from dref.wire.proto import state_command_pb2 as sc

    embedded: dict[str, Stats] = {}
    network: dict[str, Stats] = {}
    with dref_cluster(logs / "dref") as kv:
        node = kv.node

        def write(w: int, i: int) -> object:
            command = sc.StateCommand(set_element=sc.SetElementCommand(name=key(w, i), value=VALUE))
            return node.propose(command.SerializeToString())

        def reader(policy: str) -> Call:
            def read(w: int, i: int) -> object:
                query = native.KeyValueQuery(get=native.GetQuery(name=key(w, i), now=now_ms()))
                return node.read(query.SerializeToString(), policy=policy)

            return read

        calls = {"write": write, "read_lin": reader("linearizable"), "read_lease": reader("lease")}
        for i in range(KEYS):
            write(0, i)  # every key exists before reads
        before = node.status().metrics
        for op, threads, label in WORKLOADS:
            embedded[label] = summarize([run_callers(calls[op], threads, seconds)])
        after = node.status().metrics
        commits = max(1, after.group_commits - before.group_commits)
        metrics = (
            f"dref leader (embedded rows): fsync batch p50 {after.fsync_p50_ms:.2f} ms, "
            f"{(after.proposals - before.proposals) / commits:.1f} proposals per group commit"
        )
        spec = {"system": "dref", "targets": [node.address]}
        for op, threads, label in WORKLOADS:
            network[label] = run_in_processes(
                {**spec, "op": op}, threads, seconds, logs, CLIENT_PROCESSES
            )
    return embedded, network, metrics


# ----------------------------------------------------------------------------- PySyncObj


def pso_node_main(spec: dict[str, Any]) -> None:
    """One PySyncObj member; answers `leader?`, `fill` (writes the API keys) and runs
    `run <json>` workloads (with CPU figures when the run names `server_pids`)."""
    from pysyncobj import SyncObj, SyncObjConf, replicated

    class KeyValue(SyncObj):
        def __init__(self) -> None:
            conf = SyncObjConf(
                appendEntriesUseBatch=spec["batch"],
                journalFile=os.path.join(spec["dir"], "journal"),
                fullDumpFile=os.path.join(spec["dir"], "dump"),
            )
            super().__init__(spec["self"], spec["partners"], conf)
            self.data: dict[str, Any] = {}

        @replicated
        def put(self, name: str, value: Any) -> None:
            self.data[name] = value

        @replicated
        def add(self, name: str, amount: int) -> None:
            self.data[name] = self.data.get(name, 0) + amount

    os.makedirs(spec["dir"], exist_ok=True)
    store = KeyValue()
    calls: dict[str, Call] = {
        "write": lambda w, i: store.put(key(w, i), VALUE, sync=True, timeout=10),
        "read_lease": lambda w, i: store.data.get(key(w, i)),
        "set": lambda w, i: store.put(api_key(w, i), API_VALUE, sync=True, timeout=10),
        "get_lease": lambda w, i: store.data.get(api_key(w, i)),
        "update": lambda w, i: store.add("counter", 1, sync=True, timeout=10),
        "increment": lambda w, i: store.add("counter", 1, sync=True, timeout=10),
    }
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() == "leader?":
            print("1" if store.isReady() and store._isLeader() else "0", flush=True)
        elif line.strip() == "fill":
            for n in range(API_KEYS):
                store.put(f"key-{n}", API_VALUE, sync=True, timeout=10)
            store.put("counter", 0, sync=True, timeout=10)
            print("filled", flush=True)
        elif line.startswith("run "):
            run = json.loads(line[4:])
            if "server_pids" in run:
                result = measured_run(calls, lambda: int(store.data["counter"]), run)
            else:
                result = run_callers(calls[run["op"]], run["threads"], run["seconds"])
            print(json.dumps(result), flush=True)
    store.destroy()


@contextmanager
def pso_cluster(logs: Path, batch: bool) -> Iterator[tuple[Child, list[int]]]:
    """3 PySyncObj member processes: (the leader, every member's pid); stopped on exit."""
    from dref.raft.node_process import free_ports

    members = [f"127.0.0.1:{p}" for p in free_ports(3)]
    children: list[Child] = []
    try:
        for i, me in enumerate(members):
            spec = {
                "self": me,
                "partners": [m for m in members if m != me],
                "dir": str(logs / f"pso-{int(batch)}-{i}"),
                "batch": batch,
            }
            children.append(Child(script("pso-node", json.dumps(spec)), logs / "pso.log"))
        for child in children:
            if child.expect(60) != "ready":
                raise RuntimeError("PySyncObj node did not start")
        yield _pso_leader(children), [child.process.pid for child in children]
    finally:
        for child in children:
            child.stop()


def bench_pysyncobj(seconds: float, logs: Path, batch: bool) -> dict[str, Stats]:
    """Callers inside the leader of a 3-process PySyncObj cluster."""
    with pso_cluster(logs, batch) as (leader, _):
        leader.send("run " + json.dumps({"op": "write", "threads": 1, "seconds": 0.5}))
        leader.expect(60)  # warm-up, and every key written before reads
        results: dict[str, Stats] = {}
        for op, threads, label in WORKLOADS:
            if op == "read_lin":
                continue
            leader.send("run " + json.dumps({"op": op, "threads": threads, "seconds": seconds}))
            results[label] = summarize([json.loads(leader.expect(seconds + 60))])
        return results


def _pso_leader(children: list[Child]) -> Child:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for child in children:
            child.send("leader?")
            if child.expect(10) == "1":
                return child
        time.sleep(0.1)
    raise RuntimeError("PySyncObj elected no leader in 30 s")


# ----------------------------------------------------------------------------- etcd


def compile_etcd_stubs(out: Path) -> None:
    """Generate etcd_kv_pb2(_grpc).py from etcd_proto/etcd_kv.proto into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{HERE / 'etcd_proto'}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            "etcd_kv.proto",
        ],
        check=True,
        timeout=60,
    )


@dataclass(frozen=True)
class EtcdCluster:
    """A running 3-member etcd cluster: its leader's client address, the members' pids and
    the compiled stubs (directory, and the imported `etcd_kv_pb2` / `_grpc` modules)."""

    leader: str
    pids: list[int]
    stubs: str
    pb: Any
    pbg: Any


@contextmanager
def etcd_cluster(logs: Path) -> Iterator[EtcdCluster]:
    """Start 3 etcd members on loopback, wait for a leader; stop them all on exit."""
    import grpc

    stubs = logs / "etcd-stubs"
    compile_etcd_stubs(stubs)
    sys.path.insert(0, str(stubs))
    import etcd_kv_pb2 as pb
    import etcd_kv_pb2_grpc as pbg

    from dref.raft.node_process import free_ports

    ports = free_ports(6)
    clients = [f"127.0.0.1:{p}" for p in ports[:3]]
    peers = [f"http://127.0.0.1:{p}" for p in ports[3:]]
    cluster = ",".join(f"e{i}={url}" for i, url in enumerate(peers))
    processes: list[subprocess.Popen[bytes]] = []
    channels: list[grpc.Channel] = []
    try:
        with open(logs / "etcd.log", "ab") as log:
            for i in range(3):
                processes.append(
                    subprocess.Popen(
                        [
                            ETCD,
                            "--name",
                            f"e{i}",
                            "--data-dir",
                            str(logs / f"etcd-{i}"),
                            "--listen-client-urls",
                            f"http://{clients[i]}",
                            "--advertise-client-urls",
                            f"http://{clients[i]}",
                            "--listen-peer-urls",
                            peers[i],
                            "--initial-advertise-peer-urls",
                            peers[i],
                            "--initial-cluster",
                            cluster,
                            "--initial-cluster-token",
                            "dref-bench",
                            "--initial-cluster-state",
                            "new",
                        ],  # fmt: skip
                        stdout=log,
                        stderr=log,
                        stdin=subprocess.DEVNULL,
                    )
                )
        channels = [grpc.insecure_channel(address) for address in clients]
        leader = _etcd_leader(channels, clients, pb, pbg)
        yield EtcdCluster(leader, [p.pid for p in processes], str(stubs), pb, pbg)
    finally:
        for channel in channels:
            channel.close()
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def bench_etcd(seconds: float, logs: Path) -> dict[str, Stats]:
    """Network rows against a 3-member etcd cluster, clients aimed at its leader."""
    import grpc

    with etcd_cluster(logs) as etcd, grpc.insecure_channel(etcd.leader) as channel:
        put = etcd.pbg.KVStub(channel).Put
        for i in range(KEYS):
            put(etcd.pb.PutRequest(key=key(0, i).encode(), value=VALUE), timeout=10)
        spec = {"system": "etcd", "targets": [etcd.leader], "stubs": etcd.stubs}
        return {
            label: run_in_processes({**spec, "op": op}, threads, seconds, logs, CLIENT_PROCESSES)
            for op, threads, label in WORKLOADS
        }


def _etcd_leader(channels: list[Any], clients: list[str], pb: Any, pbg: Any) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for channel, address in zip(channels, clients, strict=True):
            try:
                status = pbg.MaintenanceStub(channel).Status(pb.StatusRequest(), timeout=2)
            except Exception:  # noqa: BLE001 - not up yet
                continue
            if status.leader and status.leader == status.header.member_id:
                return address
        time.sleep(0.1)
    raise RuntimeError("etcd elected no leader in 30 s")


# ----------------------------------------------------------------------------- public API


def cpu_seconds(pid: int | str = "self") -> float:
    """User + system CPU seconds of process `pid` so far, all its threads (/proc/<pid>/stat)."""
    after_name = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(after_name[11]) + int(after_name[12])) / CLOCK_TICKS


def api_slot(worker: int, i: int) -> int:
    """The key index (of API_KEYS) caller `worker` uses for its call number `i`."""
    return (worker * 31 + i) % API_KEYS


def api_key(worker: int, i: int) -> str:
    return f"key-{api_slot(worker, i)}"


def measured_run(
    calls: dict[str, Call], total: Callable[[], int], run: dict[str, Any]
) -> dict[str, Any]:
    """Run one API row here; add the CPU of this process and of `run["server_pids"]`, and for
    "update" and "increment" whether the counter grew by exactly the number of successful
    calls."""
    pids = run["server_pids"]
    counts = run["op"] in ("update", "increment")
    before = total() if counts else 0
    servers, caller = [cpu_seconds(pid) for pid in pids], cpu_seconds()
    result = run_callers(calls[run["op"]], run["threads"], run["seconds"])
    result["caller_cpu"] = cpu_seconds() - caller
    result["server_cpu"] = sum(cpu_seconds(pid) for pid in pids) - sum(servers)
    if counts:
        result["grew"] = total() - before
    return result


def app_main(spec: dict[str, Any]) -> None:
    """The application process of one system: open it, make the keys, say `ready <json>`,
    then answer `run <json>` lines with a result line until stdin closes."""
    with _app(spec) as (calls, total, details):
        for op in calls:
            for i in range(3):
                calls[op](0, i)  # connect and warm up every path before timing
        print("ready " + json.dumps(details), flush=True)
        for line in sys.stdin:
            if line.startswith("run "):
                run = json.loads(line[4:])
                run["server_pids"] = run["server_pids"] + details.get("own_server_pids", [])
                print(json.dumps(measured_run(calls, total, run)), flush=True)


@contextmanager
def _app(spec: dict[str, Any]) -> Iterator[tuple[dict[str, Call], Callable[[], int], dict]]:
    """(calls by op, the counter's value, details for the parent) of the system in `spec`."""
    if spec["system"] == "etcd":
        with _etcd_app(spec) as app:
            yield app
        return
    import dref

    if spec["system"] == "raft":
        # dref.raft is a callable module (mypy cannot see that); the others wait 3 s
        ctx = cast(Any, dref.raft)(**spec["node"], election_timeout=1.0)
        own = [_child_node_pid()]
        print("started", flush=True)  # the parent starts the other two members now
    else:
        tls = dref.TLS(*spec["tls"]) if spec.get("tls") else None
        ctx = dref.raft_client(spec["addresses"], tls=tls)
        own = []
    with ctx:  # closing it stops the embedded member's child process too
        refs = _make_refs(ctx)
        counter = ctx.ref("counter", 0)
        calls: dict[str, Call] = {
            "set": lambda w, i: refs[api_slot(w, i)].set(API_VALUE),
            "get_lin": lambda w, i: refs[api_slot(w, i)].get(policy="linearizable"),
            "get_lease": lambda w, i: refs[api_slot(w, i)].get(policy="lease"),
            "update": lambda w, i: counter.update(lambda n: n + 1),
            "increment": lambda w, i: counter.increment(),
        }
        client = cast(Any, ctx.backend).client  # a RaftBackend's dref.raft.Client
        details = {"leader": _dref_leader(client), "own_server_pids": own}
        yield calls, lambda: int(counter.get(policy="linearizable")), details


def _make_refs(ctx: Any) -> list[Any]:
    """API_KEYS refs holding API_VALUE, made once before timing (16 threads: faster)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(16) as pool:
        return list(pool.map(lambda n: ctx.ref(f"key-{n}", API_VALUE), range(API_KEYS)))


def _child_node_pid() -> int:
    """The pid of the `dref node` child that `dref.raft(...)` started in this process."""
    me = str(os.getpid())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # exited meanwhile
        if parent == me and b"dref.cli" in command and b"node" in command:
            return int(entry.name)
    raise RuntimeError("dref.raft(...) started no `dref node` child")


def _dref_leader(client: Any) -> str:
    """The id of the member that leads (polled for up to 30 s)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            status = client.status(timeout=2)
        except Exception:  # noqa: BLE001 - no leader yet
            status = {}
        if status.get("role") == "leader":
            return str(status["node_id"])
        time.sleep(0.1)
    raise RuntimeError("the dref cluster elected no leader in 30 s")


@contextmanager
def _etcd_app(spec: dict[str, Any]) -> Iterator[tuple[dict[str, Call], Callable[[], int], dict]]:
    """etcd as one Python gRPC client process uses it: one channel to the leader."""
    import grpc

    sys.path.insert(0, spec["stubs"])
    import etcd_kv_pb2 as pb
    import etcd_kv_pb2_grpc as pbg

    with grpc.insecure_channel(spec["leader"]) as channel:
        kv = pbg.KVStub(channel)
        for n in range(API_KEYS):
            kv.Put(pb.PutRequest(key=f"key-{n}".encode(), value=API_VALUE), timeout=10)
        kv.Put(pb.PutRequest(key=b"counter", value=b"0"), timeout=10)

        def get(serializable: bool) -> Call:
            return lambda w, i: kv.Range(
                pb.RangeRequest(key=api_key(w, i).encode(), serializable=serializable), timeout=10
            )

        calls: dict[str, Call] = {
            "set": lambda w, i: kv.Put(
                pb.PutRequest(key=api_key(w, i).encode(), value=API_VALUE), timeout=10
            ),
            "get_lin": get(False),
            "get_lease": get(True),
            "update": lambda w, i: _etcd_increment(kv, pb, b"counter"),
            "increment": lambda w, i: _etcd_increment(kv, pb, b"counter"),  # no atomic add
        }

        def total() -> int:
            return int(kv.Range(pb.RangeRequest(key=b"counter"), timeout=10).kvs[0].value)

        yield calls, total, {"leader": spec["leader"], "own_server_pids": []}


def _etcd_increment(kv: Any, pb: Any, name: bytes) -> None:
    """Add 1 to the number at `name` with a compare-and-swap Txn on its mod_revision."""
    current = kv.Range(pb.RangeRequest(key=name), timeout=10).kvs[0]
    for _ in range(1000):
        swap = pb.TxnRequest(
            compare=[
                pb.Compare(
                    result=pb.Compare.EQUAL,
                    target=pb.Compare.MOD,
                    key=name,
                    mod_revision=current.mod_revision,
                )
            ],
            success=[
                pb.RequestOp(
                    request_put=pb.PutRequest(key=name, value=str(int(current.value) + 1).encode())
                )
            ],
            failure=[pb.RequestOp(request_range=pb.RangeRequest(key=name))],
        )
        answer = kv.Txn(swap, timeout=10)
        if answer.succeeded:
            return
        current = answer.responses[0].response_range.kvs[0]
    raise RuntimeError("no compare-and-swap on etcd won in 1000 tries")


@dataclass(frozen=True)
class ApiRow:
    """One system's result for one API workload: Stats plus CPU per call and a check."""

    stats: Stats
    caller_cpu_us: float
    server_cpu_us: float
    check: str


def api_row(result: dict[str, Any]) -> ApiRow:
    stats = summarize([result])
    ops = max(1, stats.count)
    check = ""
    if "grew" in result:
        grew = result["grew"]
        check = "exact" if grew == stats.count else f"counter +{grew} for {stats.count} calls"
    return ApiRow(stats, result["caller_cpu"] * 1e6 / ops, result["server_cpu"] * 1e6 / ops, check)


def run_app_rows(
    app: Child, server_pids: list[int], seconds: float, skip: frozenset[str] = frozenset()
) -> dict[str, ApiRow]:
    """Every API workload (but the `skip` ops), one after the other, in the app `app`."""
    rows: dict[str, ApiRow] = {}
    for op, threads, label in API_WORKLOADS:
        if op in skip:
            continue
        run = {"op": op, "threads": threads, "seconds": seconds, "server_pids": server_pids}
        app.send("run " + json.dumps(run))
        rows[label] = api_row(json.loads(app.expect(seconds + 120)))
    return rows


def start_app(spec: dict[str, Any], logs: Path) -> Child:
    """An application process for `spec` (stop it when done)."""
    return Child(script("app", json.dumps(spec)), logs / "app.log")


def await_ready(app: Child) -> dict[str, Any]:
    """The details the app prints once its keys exist and every path is warm."""
    line = app.expect(180)
    if not line.startswith("ready "):
        raise RuntimeError(f"app process said {line!r}, not ready")
    details: dict[str, Any] = json.loads(line[6:])
    return details


def api_dref(system: str, seconds: float, logs: Path) -> tuple[dict[str, ApiRow], str]:
    """dref rows: `raft` embeds member n1 in the app process (dref.raft, isolate=True) beside
    two `dref node` processes; `raft_client` is only a client of three `dref node`s. The
    `_grpc` variants run the same with peers on gRPC (DREF_PEER_TRANSPORT, inherited by
    every node process)."""
    grpc_peers = system.endswith("_grpc")
    previous = os.environ.get("DREF_PEER_TRANSPORT")
    os.environ["DREF_PEER_TRANSPORT"] = "grpc" if grpc_peers else "socket"
    base = system.removesuffix("_grpc").removesuffix("_tls")
    try:
        return _api_dref(base, ALL_NAMES[system], seconds, logs, tls=system.endswith("_tls"))
    finally:
        if previous is None:
            os.environ.pop("DREF_PEER_TRANSPORT")
        else:
            os.environ["DREF_PEER_TRANSPORT"] = previous


def _api_dref(
    system: str, name: str, seconds: float, logs: Path, *, tls: bool = False
) -> tuple[dict[str, ApiRow], str]:
    from dref.raft.node_process import NodeProcess, free_ports, node_arguments

    directory = logs / f"api-{name.replace(' ', '-')}"
    directory.mkdir(parents=True)
    addresses = {f"n{i + 1}": f"127.0.0.1:{port}" for i, port in enumerate(free_ports(3))}
    certs = directory / "certs"
    if tls:
        from dref.certs import init_ca, issue_certificate

        init_ca(directory / "ca")
        for holder, role in [*((node_id, None) for node_id in addresses), ("app", "write")]:
            issue_certificate(directory / "ca", holder, certs, role=role, local=True)
    servers: list[NodeProcess] = []
    app: Child | None = None
    try:
        embedded = ["n1"] if system == "raft" else []
        if embedded:  # n1 starts first and has the shortest election timeout: it should lead
            node = {
                "node_id": "n1",
                "listen": addresses["n1"],
                "peers": {k: v for k, v in addresses.items() if k != "n1"},
                "data_dir": str(directory / "n1"),
            }
            app = start_app({"system": "raft", "node": node}, directory)
            if app.expect(180) != "started":
                raise RuntimeError("the app's dref.raft(...) did not start")
        for node_id in addresses:
            if node_id in embedded:
                continue
            peers = {k: v for k, v in addresses.items() if k != node_id}
            arguments = node_arguments(
                node_id,
                addresses[node_id],
                peers,
                directory / node_id,
                election_ms=3000 if embedded else None,
            )
            if tls:
                arguments += ["--tls-cert", str(certs / f"{node_id}.crt"), "--tls-key"]
                arguments += [str(certs / f"{node_id}.key"), "--tls-ca", str(certs / "ca.crt")]
            servers.append(NodeProcess(arguments, log=directory / f"{node_id}.log"))
        if app is None:
            spec: dict[str, Any] = {"system": "raft_client", "addresses": list(addresses.values())}
            if tls:
                spec["tls"] = [str(certs / f) for f in ("app.crt", "app.key", "ca.crt")]
            app = start_app(spec, directory)
        leader = await_ready(app)["leader"]
        if embedded and leader != "n1":  # a loaded box can starve n1's campaign
            leader = f"{_transfer_leadership(addresses['n1'], 'n1')} (given by {leader})"
        rows = run_app_rows(app, [s.process.pid for s in servers], seconds)
        embedded_note = " (n1 is the member embedded in the app process)" if embedded else ""
        return rows, f"{name}: {leader} led{embedded_note}"
    finally:
        if app is not None:
            app.stop()
        for server in servers:
            server.stop()


def _transfer_leadership(address: str, to: str) -> str:
    """Hand leadership to member `to` with `dref transfer-leader`; the leader it reports."""
    command = [sys.executable, "-m", "dref.cli", "transfer-leader", address, "--to", to]
    done = subprocess.run(command, capture_output=True, text=True, timeout=90)
    words = done.stdout.split()
    return words[-1] if done.returncode == 0 and words else f"? (transfer failed: {done.stderr})"


def api_etcd(seconds: float, logs: Path) -> tuple[dict[str, ApiRow], str]:
    """etcd rows: 3 members, one Python client process with a gRPC channel to the leader."""
    with etcd_cluster(logs) as etcd:
        spec = {"system": "etcd", "leader": etcd.leader, "stubs": etcd.stubs}
        app = start_app(spec, logs)
        try:
            await_ready(app)
            rows = run_app_rows(app, etcd.pids, seconds)
        finally:
            app.stop()
    return rows, "etcd: get lease = serializable Range; update = Txn compare-and-swap loop"


def api_pysyncobj(seconds: float, logs: Path) -> tuple[dict[str, ApiRow], str]:
    """PySyncObj no-batch rows: caller threads inside the leader's process (no client)."""
    with pso_cluster(logs, batch=False) as (leader, pids):
        leader.send("fill")
        leader.expect(120)
        rows = run_app_rows(leader, pids, seconds, skip=frozenset({"get_lin"}))
    note = (
        "PySyncObj no-batch: callers in the leader (caller CPU = that member), journal never "
        "fsynced, get lease = dict lookup, update = a replicated add (no compare-and-swap)"
    )
    return rows, note


def api_main(systems: list[str], seconds: float) -> None:
    """Run the API rows of `systems` and print one table."""
    runners: dict[str, Callable[[float, Path], tuple[dict[str, ApiRow], str]]] = {
        "raft": lambda s, logs: api_dref("raft", s, logs),
        "raft_client": lambda s, logs: api_dref("raft_client", s, logs),
        "raft_grpc": lambda s, logs: api_dref("raft_grpc", s, logs),
        "raft_client_grpc": lambda s, logs: api_dref("raft_client_grpc", s, logs),
        "raft_client_tls": lambda s, logs: api_dref("raft_client_tls", s, logs),
        "etcd": api_etcd,
        "pysyncobj": api_pysyncobj,
    }
    columns: dict[str, dict[str, ApiRow]] = {}
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="raft-bench-") as tmp:
        for system in systems:
            missing = _missing(system)
            if missing:
                notes.append(missing)
                continue
            columns[ALL_NAMES[system]], note = runners[system](seconds, Path(tmp))
            notes.append(note)
    print_api_table(columns, seconds, notes)


def _missing(system: str) -> str:
    """Why `system` cannot run here ("" when it can)."""
    if system == "etcd" and not os.access(ETCD, os.X_OK):
        return f"etcd: {ETCD} not found (apt-get install etcd-server): skipped"
    if system == "pysyncobj":
        try:
            import pysyncobj  # noqa: F401
        except ImportError:
            return "PySyncObj: not installed (pip install pysyncobj): skipped"
    return ""


def print_api_table(columns: dict[str, dict[str, ApiRow]], seconds: float, notes: list) -> None:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"\ndref-py public API, {time.strftime('%Y-%m-%d %H:%M')}, nproc "
        f"{len(os.sched_getaffinity(0))}, load {load}, {seconds:g} s per row; 3 members on "
        f"127.0.0.1, fsync on, {API_KEYS} keys, {len(API_VALUE)}-byte values"
    )
    print(
        "How to read: callers are threads of one application process. caller/op = CPU of that\n"
        "process per call, servers/op = CPU of the 3 members per call (for dref.raft() the\n"
        "embedded member's child process is one of them), both from /proc/<pid>/stat.\n"
        "vs etcd: ops/s and p50 divided by etcd's in the same row (ops/s > 1 and p50 < 1\n"
        "are better than etcd). E = calls that raised."
    )
    header = (
        f"{'workload':<30}{'system':<20}{'ops/s':>8}{'p50':>10}{'p99':>10}"
        f"{'caller/op':>11}{'servers/op':>12}{'ops/s vs etcd':>15}{'p50 vs etcd':>13}  check"
    )
    print(header)
    print("-" * len(header))
    for _, _, label in API_WORKLOADS:
        etcd = columns.get(API_NAMES["etcd"], {}).get(label)
        for name, rows in columns.items():
            row = rows.get(label)
            if row is None:
                print(f"{label:<30}{name:<20}{'n/a':>8}")
                continue
            s = row.stats
            versus = ("n/a", "n/a")
            if etcd is not None and etcd.stats.ops_s and s.p50_us:
                versus = (
                    f"{s.ops_s / etcd.stats.ops_s:.3g}x",
                    f"{s.p50_us / etcd.stats.p50_us:.3g}x",
                )
            errors = f" E{s.errors}" if s.errors else ""
            print(
                f"{label:<30}{name:<20}{s.ops_s:>8.0f}{latency(s.p50_us):>10}"
                f"{latency(s.p99_us):>10}{latency(row.caller_cpu_us):>11}"
                f"{latency(row.server_cpu_us):>12}{versus[0]:>15}{versus[1]:>13}  "
                f"{row.check}{errors}"
            )
    for note in notes:
        print(note)


# ----------------------------------------------------------------------------- report


def latency(us: float) -> str:
    if us < 100:
        return f"{us:.1f}us"
    return f"{us:.0f}us" if us < 1000 else f"{us / 1000:.2f}ms"


def cell(stats: Stats | None) -> str:
    if stats is None:
        return "n/a"
    errors = f" E{stats.errors}" if stats.errors else ""
    return f"{stats.ops_s:7.0f} {latency(stats.p50_us):>7} {latency(stats.p99_us):>7}{errors}"


def ratio(ours: Stats | None, theirs: Stats | None) -> str:
    if ours is None or theirs is None or theirs.ops_s == 0:
        return "n/a"
    return f"{ours.ops_s / theirs.ops_s:.2f}x"


def print_table(columns: dict[str, dict[str, Stats]], seconds: float) -> None:
    names = list(columns)
    print(f"\n{seconds:g} s per row; each cell: ops/s  p50  p99 (E = errors); ratios are")
    print("ops/s of dref embedded / the better PySyncObj mode, dref network / etcd network")
    header = f"{'workload':<24}" + "".join(f"{n:>26}" for n in names)
    header += f"{'emb/PSO':>10}{'net/etcd':>10}"  # PSO: the better of its two modes
    print(header)
    print("-" * len(header))
    for _, _, label in WORKLOADS:
        row = f"{label:<24}" + "".join(f"{cell(columns[n].get(label)):>26}" for n in names)
        modes = [columns.get(f"PySyncObj {m}", {}).get(label) for m in ("no-batch", "default")]
        pso = max((m for m in modes if m is not None), key=lambda m: m.ops_s, default=None)
        etcd = columns.get("etcd network", {}).get(label)
        row += f"{ratio(columns.get('dref embedded', {}).get(label), pso):>10}"
        row += f"{ratio(columns.get('dref network', {}).get(label), etcd):>10}"
        print(row)


def engine_main(systems: set[str], seconds: float) -> None:
    """The engine-level table (`--engine`): Node.propose/read and dref.raft.Client rows."""
    columns: dict[str, dict[str, Stats]] = {}
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="raft-bench-") as tmp:
        logs = Path(tmp)
        if "dref" in systems:
            embedded, network, metrics = bench_dref(seconds, logs)
            columns["dref embedded"], columns["dref network"] = embedded, network
            notes.append(metrics)
        if "pysyncobj" in systems:
            missing = _missing("pysyncobj")
            if missing:
                notes.append(missing)
            else:
                columns["PySyncObj no-batch"] = bench_pysyncobj(seconds, logs, False)
                columns["PySyncObj default"] = bench_pysyncobj(seconds, logs, True)
                notes.append("PySyncObj: callers in the leader; no fsync; lease read = local")
        if "etcd" in systems:
            missing = _missing("etcd")
            if missing:
                notes.append(missing)
            else:
                columns["etcd network"] = bench_etcd(seconds, logs)
                notes.append("etcd: lease read = serializable Range on the leader")
        print_table(columns, seconds)
        for note in notes:
            print(note)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each row")
    parser.add_argument(
        "--engine", action="store_true", help="the engine-level table instead of the API one"
    )
    parser.add_argument(
        "--only",
        help="comma-separated systems (API: raft,raft_client,etcd,pysyncobj, and"
        " raft_grpc,raft_client_grpc for peers on gRPC, raft_client_tls for mutual TLS;"
        " --engine: dref,pysyncobj,etcd)",
    )
    args = parser.parse_args()
    # SIGTERM unwinds like Ctrl-C, so every `finally` stops the clusters it started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.engine:
        engine_main(set((args.only or "dref,pysyncobj,etcd").split(",")), args.seconds)
        return
    systems = (args.only or ",".join(API_NAMES)).split(",")
    unknown = set(systems) - set(ALL_NAMES)
    if unknown:
        parser.error(f"unknown systems {sorted(unknown)}; choose from {list(ALL_NAMES)}")
    api_main(systems, args.seconds)


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "worker":
        worker_main(json.loads(sys.argv[2]))
    elif len(sys.argv) >= 3 and sys.argv[1] == "pso-node":
        pso_node_main(json.loads(sys.argv[2]))
    elif len(sys.argv) >= 3 and sys.argv[1] == "app":
        app_main(json.loads(sys.argv[2]))
    else:
        main()
