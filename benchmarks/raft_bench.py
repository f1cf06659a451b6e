"""dref-py's Raft vs PySyncObj vs etcd: writes and reads on 3-member loopback clusters.

Run from a fresh clone with one command (it creates .venv, installs the `bench` extra and,
as root, the Debian etcd-server package; etcd rows are skipped without it):

    bash scripts/dev.sh bench [--seconds 3] [--only dref,pysyncobj,etcd]

Each system runs alone, one after the other, on 127.0.0.1 with fsync on:

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
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    """One PySyncObj member; answers `leader?` and runs `run <json>` workloads on request."""
    from pysyncobj import SyncObj, SyncObjConf, replicated

    class KeyValue(SyncObj):
        def __init__(self) -> None:
            conf = SyncObjConf(
                appendEntriesUseBatch=spec["batch"],
                journalFile=os.path.join(spec["dir"], "journal"),
                fullDumpFile=os.path.join(spec["dir"], "dump"),
            )
            super().__init__(spec["self"], spec["partners"], conf)
            self.data: dict[str, bytes] = {}

        @replicated
        def put(self, name: str, value: bytes) -> None:
            self.data[name] = value

    os.makedirs(spec["dir"], exist_ok=True)
    store = KeyValue()
    print("ready", flush=True)
    for line in sys.stdin:
        if line.strip() == "leader?":
            print("1" if store.isReady() and store._isLeader() else "0", flush=True)
        elif line.startswith("run "):
            run = json.loads(line[4:])
            if run["op"] == "write":
                call: Call = lambda w, i: store.put(key(w, i), VALUE, sync=True, timeout=10)  # noqa: E731
            else:
                call = lambda w, i: store.data.get(key(w, i))  # noqa: E731
            print(json.dumps(run_callers(call, run["threads"], run["seconds"])), flush=True)
    store.destroy()


def bench_pysyncobj(seconds: float, logs: Path, batch: bool) -> dict[str, Stats]:
    """Callers inside the leader of a 3-process PySyncObj cluster."""
    from dref.raft.node_process import free_ports

    ports = free_ports(3)
    members = [f"127.0.0.1:{p}" for p in ports]
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
        leader = _pso_leader(children)
        leader.send("run " + json.dumps({"op": "write", "threads": 1, "seconds": 0.5}))
        leader.expect(60)  # warm-up, and every key written before reads
        results: dict[str, Stats] = {}
        for op, threads, label in WORKLOADS:
            if op == "read_lin":
                continue
            leader.send("run " + json.dumps({"op": op, "threads": threads, "seconds": seconds}))
            results[label] = summarize([json.loads(leader.expect(seconds + 60))])
        return results
    finally:
        for child in children:
            child.stop()


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


def bench_etcd(seconds: float, logs: Path) -> dict[str, Stats]:
    """Network rows against a 3-member etcd cluster, clients aimed at its leader."""
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
        put = pbg.KVStub(channels[clients.index(leader)]).Put
        for i in range(KEYS):
            put(pb.PutRequest(key=key(0, i).encode(), value=VALUE), timeout=10)
        spec = {"system": "etcd", "targets": [leader], "stubs": str(stubs)}
        return {
            label: run_in_processes({**spec, "op": op}, threads, seconds, logs, CLIENT_PROCESSES)
            for op, threads, label in WORKLOADS
        }
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each row")
    parser.add_argument("--only", default="dref,pysyncobj,etcd", help="comma-separated systems")
    args = parser.parse_args()
    systems = set(args.only.split(","))
    columns: dict[str, dict[str, Stats]] = {}
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="raft-bench-") as tmp:
        logs = Path(tmp)
        if "dref" in systems:
            embedded, network, metrics = bench_dref(args.seconds, logs)
            columns["dref embedded"], columns["dref network"] = embedded, network
            notes.append(metrics)
        if "pysyncobj" in systems:
            try:
                import pysyncobj  # noqa: F401
            except ImportError:
                notes.append("PySyncObj: not installed (pip install pysyncobj): skipped")
            else:
                columns["PySyncObj no-batch"] = bench_pysyncobj(args.seconds, logs, False)
                columns["PySyncObj default"] = bench_pysyncobj(args.seconds, logs, True)
                notes.append("PySyncObj: callers in the leader; no fsync; lease read = local")
        if "etcd" in systems:
            if not os.access(ETCD, os.X_OK):
                notes.append(f"etcd: {ETCD} not found (apt-get install etcd-server): skipped")
            else:
                columns["etcd network"] = bench_etcd(args.seconds, logs)
                notes.append("etcd: lease read = serializable Range on the leader")
        print_table(columns, args.seconds)
        for note in notes:
            print(note)


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "worker":
        worker_main(json.loads(sys.argv[2]))
    elif len(sys.argv) >= 3 and sys.argv[1] == "pso-node":
        pso_node_main(json.loads(sys.argv[2]))
    else:
        main()
