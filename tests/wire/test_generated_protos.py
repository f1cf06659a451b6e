"""The committed protobuf modules are exactly what grpcio-tools generates, and encode the
golden StateCommand of spec 8.2."""

from __future__ import annotations

from pathlib import Path

import pytest

import dref.wire.proto
from dref.wire.proto import state_command_pb2

COMMITTED = Path(dref.wire.proto.__file__).resolve().parent


def test_committed_modules_match_a_fresh_generation(tmp_path):
    try:
        import grpc_tools  # noqa: F401 - only probing that the dev extra is installed
    except ImportError:
        pytest.skip("grpc_tools is not installed (pip install -e '.[dev]' to run this check)")
    from dref.wire.generate_protos import PROTO_FILES, generate

    written = generate(tmp_path)
    assert written, "generate() wrote no files"
    names = sorted(path.name for path in written)
    for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py"):
        assert sum(name.endswith(suffix) for name in names) == len(PROTO_FILES), names
    for path in written:
        assert path.read_bytes() == (COMMITTED / path.name).read_bytes(), (
            f"{path.name} differs from a fresh generation; run python -m dref.wire.generate_protos"
        )


def test_set_element_golden_bytes():
    command = state_command_pb2.StateCommand(
        set_element=state_command_pb2.SetElementCommand(
            name="my-key", value=b"\x01\x02\x03", expire_at=1700000000
        )
    )
    data = command.SerializeToString(deterministic=True)
    assert data.hex() == "0a130a066d792d6b657912030102031880e2cfaa06"
    parsed = state_command_pb2.StateCommand.FromString(data)
    assert parsed.WhichOneof("op") == "set_element"
    assert parsed.set_element.HasField("expire_at")
    assert parsed == command
