"""One long-lived PeerStream per peer pair, carrying many consensus requests per frame.

Each envelope holds the bytes a unary consensus RPC would carry, so the codec is shared
with the unary path; answers come back with the request's id. The serving side reads
frames on its own thread and writes answers as the node produces them; the calling side
queues requests, joins whatever queued up into one frame, and maps answers back by id.
Lost requests are just dropped: the Raft core's flow control resends them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from functools import partial

import grpc
from google.protobuf.message import DecodeError
from google.protobuf.message import Message as Proto

from dref.actors.consensus.messages import Message
from dref.wire.call_refused import CallRefused
from dref.wire.consensus_codec import NATIVE_SERVICE, Rpc, decode_response, encode_response
from dref.wire.proto import dref_consensus_pb2 as pb

logger = logging.getLogger("dref.raft")

PEER_STREAM_METHOD = "PeerStream"
PEER_STREAM_PATH = f"/{NATIVE_SERVICE}/{PEER_STREAM_METHOD}"

RPC_BY_METHOD: dict[str, Rpc] = {rpc.value.method: rpc for rpc in Rpc}
"""The unary RPC an envelope's `method` names (method names are unique across services)."""

OnReply = Callable[[Message], None]
Pending = tuple[Rpc, bytes, OnReply, float]
"""A request awaiting its answer: rpc, request bytes, reply callback, monotonic send time."""


Admit = Callable[[Rpc, bytes], Message]
"""Decodes a request's bytes and checks its sender; raises CallRefused."""
Submit = Callable[[Message], "Future[Message | None]"]


# ------------------------------------------------------------------------- serving


class _Answers:
    """What one served stream has to write, shared by its reader and its writer."""

    __slots__ = ("cond", "ready", "open", "reading", "refused", "dead")

    def __init__(self) -> None:
        self.cond = threading.Condition(threading.Lock())
        self.ready: list[tuple[int, Rpc, Future[Message | None]]] = []
        self.open = 0  # requests submitted and not answered yet
        self.reading = True
        self.refused: CallRefused | None = None
        self.dead = False

    def answered(self, ident: int, rpc: Rpc, future: Future[Message | None]) -> None:
        with self.cond:
            self.open -= 1
            self.ready.append((ident, rpc, future))
            self.cond.notify()

    def stop_reading(self, refused: CallRefused | None) -> None:
        with self.cond:
            self.reading = False
            if refused is not None and self.refused is None:
                self.refused = refused
            self.cond.notify()

    def kill(self) -> None:
        with self.cond:
            self.dead = True
            self.cond.notify()


def serve_peer_stream(
    frames: Iterator[bytes], context: grpc.ServicerContext, admit: Admit, submit: Submit
) -> Iterator[bytes]:
    """Answer a peer's stream of request frames; ends when it half-closes and all is answered.

    A malformed frame or unknown method aborts with INVALID_ARGUMENT; `admit`'s refusals
    abort with their code. A request the node fails to answer gets no answer (lost call).
    """
    answers = _Answers()
    if not context.add_callback(answers.kill):
        return
    threading.Thread(
        target=_read_frames,
        args=(frames, answers, admit, submit),
        name="dref-peer-stream-reader",
        daemon=True,
    ).start()
    cond = answers.cond
    while True:
        with cond:
            while (
                not answers.ready
                and answers.refused is None
                and not answers.dead
                and (answers.reading or answers.open)
            ):
                cond.wait()
            ready, answers.ready = answers.ready, []
            refused = answers.refused
            finished = answers.dead or not (answers.reading or answers.open)
        if refused is not None:
            context.abort(refused.code, refused.details)
        if ready:
            frame = pb.PeerFrame()
            add = frame.envelopes.add
            for ident, rpc, future in ready:
                try:
                    payload = encode_response(rpc, future.result(0)).SerializeToString()
                except Exception:  # noqa: BLE001 - the node failed or closed: a lost call
                    continue
                add(id=ident, method=rpc.value.method, payload=payload)
            if frame.envelopes:
                yield frame.SerializeToString()
        if finished:
            return


def _read_frames(frames: Iterator[bytes], answers: _Answers, admit: Admit, submit: Submit) -> None:
    """Submit every request of every frame until the peer half-closes or the call ends."""
    refused: CallRefused | None = None
    try:
        for data in frames:
            try:
                frame = pb.PeerFrame.FromString(data)
            except (DecodeError, ValueError) as exc:
                raise CallRefused(
                    grpc.StatusCode.INVALID_ARGUMENT, f"malformed PeerFrame: {exc}"
                ) from None
            envelopes = frame.envelopes
            with answers.cond:
                answers.open += len(envelopes)
            for envelope in envelopes:
                rpc = RPC_BY_METHOD.get(envelope.method)
                if rpc is None:
                    raise CallRefused(
                        grpc.StatusCode.INVALID_ARGUMENT, f"unknown method {envelope.method!r}"
                    )
                message = admit(rpc, envelope.payload)
                submit(message).add_done_callback(partial(answers.answered, envelope.id, rpc))
    except CallRefused as exc:
        refused = exc
    except Exception:  # noqa: BLE001 - the call was cancelled or broke: nothing to answer
        logger.debug("peer stream ended while reading", exc_info=True)
    finally:
        answers.stop_reading(refused)


# ------------------------------------------------------------------------- calling


class PeerStream:
    """One open PeerStream call: queued requests, and the callbacks awaiting answers by id.

    Guarded by the owner's lock (`cond`); once `dead` it takes nothing more and the owner
    opens a new one. `fallback` gets the unanswered requests when the peer lacks PeerStream.
    """

    def __init__(
        self,
        open_call: Callable[[Iterator[bytes]], Iterator[bytes]],
        peer_id: str,
        cond: threading.Condition,
        fallback: Callable[[list[Pending]], None],
    ) -> None:
        self.dead = False
        self._peer_id = peer_id
        self._cond = cond
        self._fallback = fallback
        self._queue: list[tuple[int, str, bytes]] = []
        self._pending: dict[int, Pending] = {}
        self._last_id = 0
        self._call = open_call(self._frames())
        threading.Thread(
            target=self._receive, name=f"dref-peer-stream-{peer_id}", daemon=True
        ).start()

    def put_locked(self, rpc: Rpc, payload: bytes, on_reply: OnReply, now: float) -> None:
        """Queue a request (the caller holds `cond`)."""
        self._last_id = ident = self._last_id + 1
        self._pending[ident] = (rpc, payload, on_reply, now)
        queue = self._queue
        queue.append((ident, rpc.value.method, payload))
        if len(queue) == 1:
            self._cond.notify_all()

    def stale_locked(self, now: float, timeout: float) -> bool:
        """Whether the oldest unanswered request waited longer than `timeout`."""
        pending = self._pending
        return bool(pending) and now - next(iter(pending.values()))[3] > timeout

    def cancel_locked(self) -> None:
        """Mark dead and drop what is queued or awaited; call `finish_cancel` after unlocking."""
        self.dead = True
        self._pending = {}
        self._queue = []
        self._cond.notify_all()

    def finish_cancel(self) -> None:
        """End the gRPC call (outside the lock: cancelling may run gRPC callbacks)."""
        self._call.cancel()  # type: ignore[attr-defined]

    def _frames(self) -> Iterator[bytes]:
        cond = self._cond
        while True:
            with cond:
                while not self._queue and not self.dead:
                    cond.wait()
                if self.dead:
                    return
                batch, self._queue = self._queue, []
            frame = pb.PeerFrame()
            add = frame.envelopes.add
            for ident, method, payload in batch:
                add(id=ident, method=method, payload=payload)
            yield frame.SerializeToString()

    def _receive(self) -> None:
        code: grpc.StatusCode | None = None
        peer = self._peer_id
        try:
            for data in self._call:
                envelopes = pb.PeerFrame.FromString(data).envelopes
                with self._cond:
                    pop = self._pending.pop
                    got = [(pop(e.id, None), e.payload) for e in envelopes]
                for entry, payload in got:
                    if entry is not None:
                        _deliver(entry, payload, peer)
        except grpc.RpcError as exc:
            code = exc.code()
            logger.debug("peer stream to %s ended: %s", peer, code)
        except Exception:  # noqa: BLE001 - a malformed frame: this stream is unusable
            logger.warning("bad peer stream frame from %s", peer, exc_info=True)
        with self._cond:
            lost = list(self._pending.values())
            self.cancel_locked()
        self.finish_cancel()
        if code == grpc.StatusCode.UNIMPLEMENTED:
            self._fallback(lost)


def _deliver(entry: Pending, payload: bytes, peer: str) -> None:
    rpc, _, on_reply, _ = entry
    deliver_answer(rpc, payload, on_reply, peer)


def deliver_answer(rpc: Rpc, response: Proto | bytes, on_reply: OnReply, peer: str) -> None:
    """Decode a peer's answer to `rpc` (a protobuf, or its bytes) and hand it to `on_reply`;
    a bad answer is logged and dropped (the core retries)."""
    try:
        if isinstance(response, bytes):
            response = rpc.value.response_type.FromString(response)
        reply = decode_response(rpc, response, peer)
    except Exception:  # noqa: BLE001 - a bad answer is dropped, the core retries
        logger.warning("bad %s answer from %s", rpc.value.method, peer, exc_info=True)
        return
    if reply is not None:
        try:
            on_reply(reply)
        except Exception:  # noqa: BLE001 - keep serving other answers
            logger.exception("reply callback for %s failed", peer)
