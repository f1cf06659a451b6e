"""Crash simulation: a writer process is SIGKILLed mid-stream; every acknowledged record lives."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from dref.storage.command_log import CommandLog, LogRecord
from dref.wire.proto.state_command_pb2 import SetElementCommand, StateCommand

# Appends batches of growing records forever, printing the last seq of each batch only after
# append_many (write + fsync) returned; a commit header update every few batches.
WRITER = """
import sys
from pathlib import Path
from dref.storage.command_log import CommandLog, LogRecord
from dref.wire.proto.state_command_pb2 import SetElementCommand, StateCommand

log = CommandLog(Path(sys.argv[1]))
seq = max(log.open().records, default=0)
while True:
    batch = []
    for _ in range(1 + seq % 4):
        seq += 1
        value = bytes([seq % 256]) * (seq * 37 % 5000)
        command = StateCommand(set_element=SetElementCommand(name=f"k{seq}", value=value))
        batch.append(LogRecord(seq, command.SerializeToString()))
    log.append_many(batch)
    if seq % 3 == 0:
        log.set_commit_seq(seq - 1)
    print(seq, flush=True)
"""


def run_writer_and_kill(directory: Path, acks_before_kill: int) -> int:
    """Start the writer, SIGKILL it after `acks_before_kill` acknowledgements, return the
    highest acknowledged seq (including acks printed between the decision and the kill)."""
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(directory)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    acked = 0
    try:
        for count, line in enumerate(child.stdout, start=1):
            acked = int(line)
            if count == acks_before_kill:
                child.send_signal(signal.SIGKILL)
                break
        acked = max([acked, *(int(line) for line in child.stdout)])
    finally:
        child.kill()
        _, stderr = child.communicate()
    assert child.returncode == -signal.SIGKILL, stderr
    return acked


def expected_command(seq: int) -> bytes:
    value = bytes([seq % 256]) * (seq * 37 % 5000)
    return StateCommand(
        set_element=SetElementCommand(name=f"k{seq}", value=value)
    ).SerializeToString()


@pytest.mark.slow
def test_every_acknowledged_record_survives_sigkill(tmp_path: Path) -> None:
    highest = 0
    for acks in (40, 25, 60):
        highest = run_writer_and_kill(tmp_path, acks)
        with CommandLog(tmp_path) as log:
            loaded = log.open()
            missing = [s for s in range(1, highest + 1) if s not in loaded.records]
            assert not missing, f"acknowledged seqs lost: {missing[:10]}"
            assert all(loaded.records[s] == expected_command(s) for s in loaded.records)
            assert loaded.commit_seq < max(loaded.records)
    with CommandLog(tmp_path) as log:
        last = max(log.open().records)
        log.append(LogRecord(last + 1, expected_command(last + 1)))
    with CommandLog(tmp_path) as log:
        loaded = log.open()
    assert loaded.torn_tail is None
    assert list(loaded.records) == list(range(1, last + 2))
