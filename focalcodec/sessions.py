"""Many streams at once (continuous batching): independent sessions that join and leave at any chunk,
advanced together by one batched streaming step, each coded as if it were alone.

Shared by ``focalcodec.streaming.CodecStreamServer`` (PyTorch) and
``focalcodec.onnx_runtime.OnnxStreamServer`` (ONNX Runtime); imports neither torch nor numpy::

    server = CodecStreamServer(codec)      # or OnnxCodec(path).server()
    a, b = server.open(), server.open()    # two sessions
    server.push(a, samples)                # (n,) samples of session a, any n, whenever they arrive
    server.step()                          # every session with a whole chunk pending advances by one chunk
    toks, codes, audio = server.pull(a)    # what session a has coded since its last pull
    server.close(b)                        # b ends: its rest is zero-padded to a chunk by the next step

A step runs the sessions' chunks as one batch, each with its own state (the states are stacked along the
batch axis, the encoder's position one per session), so a session that joined later or has fewer samples
pending does not hold the others back. A session's first chunk starts its stream as a fresh call would
(its convolution contexts repeat its first frame): new sessions run as a batch of their own in that step.
"""

from dataclasses import dataclass, field
from typing import Any

__all__ = ["StreamServer"]


@dataclass
class _Session:
    """One stream: samples pushed but not coded, its state (``None`` before its first chunk), its outputs
    not pulled yet, and whether it was closed."""

    pieces: list = field(default_factory=list)
    pending: int = 0
    state: Any = None
    outputs: list = field(default_factory=list)
    closed: bool = False
    steps: int = 0

    @property
    def finished(self) -> bool:
        return self.closed and self.pending == 0


class StreamServer:
    """Sessions buffered into whole chunks and coded together (see the module docstring).

    Subclasses provide the array type (:meth:`_check_samples`, :meth:`_concat`, :meth:`_zero_pad`) and the
    model (:meth:`_code`, one batched step of several sessions' chunks; :meth:`_join`, a session's outputs
    as one).

    Arguments
    ---------
    chunk_size : samples per chunk.
    max_batch : at most this many sessions advance in one step (those that waited longest), or ``None``
        for all.
    """

    def __init__(self, chunk_size: int, max_batch: int | None = None) -> None:
        if max_batch is not None and max_batch < 1:
            raise ValueError(f"max_batch must be at least 1 (or None for every session), got {max_batch}")
        self.chunk_size = chunk_size
        self.max_batch = max_batch
        self._sessions: dict[int, _Session] = {}
        self._next_key = 0

    @property
    def sessions(self) -> list[int]:
        """The sessions opened and not yet finished and pulled."""
        return list(self._sessions)

    def open(self) -> int:
        """A new session (its key)."""
        key, self._next_key = self._next_key, self._next_key + 1
        self._sessions[key] = _Session()
        return key

    def push(self, session: int, samples: Any) -> None:
        """Add ``samples`` (n,), any n >= 0, to ``session``; they are coded by the next steps."""
        record = self._get(session)
        if record.closed:
            raise ValueError(f"session {session} was closed: open a new session for a new stream")
        samples = self._check_samples(samples)
        if samples.shape[0]:
            record.pieces.append(samples)
            record.pending += samples.shape[0]

    def close(self, session: int) -> None:
        """End ``session``: the next step codes its pending samples zero-padded to a chunk (if any)."""
        record = self._get(session)
        record.closed = True
        if record.pending % self.chunk_size > 0:
            amount = self.chunk_size - record.pending % self.chunk_size
            record.pieces = [self._zero_pad(self._concat(record.pieces), amount)]
            record.pending += amount

    def pending(self, session: int) -> int:
        """Samples of ``session`` pushed (or padded by :meth:`close`) but not coded yet."""
        return self._get(session).pending

    def ready(self) -> list[int]:
        """The sessions the next :meth:`step` advances: a whole chunk pending, longest waiting first."""
        waiting = [key for key, record in self._sessions.items() if record.pending >= self.chunk_size]
        waiting.sort(key=lambda key: self._sessions[key].steps)
        return waiting if self.max_batch is None else waiting[: self.max_batch]

    def step(self) -> list[int]:
        """Advance every :meth:`ready` session by one chunk, in one batched call (new sessions in a
        second one); returns the sessions advanced."""
        keys = self.ready()
        chunks = {key: self._take_chunk(self._sessions[key]) for key in keys}
        for group in self._groups(keys):
            records = [self._sessions[key] for key in group]
            outputs, states = self._code([chunks[key] for key in group], [r.state for r in records])
            for record, output, state in zip(records, outputs, states, strict=True):
                record.outputs.append(output)
                record.state = state
                record.steps += 1
        return keys

    def pull(self, session: int) -> Any:
        """What ``session`` has coded since its last pull (``toks``, ``codes``, ``sig``; empty if nothing).
        A closed session whose chunks are all coded is then forgotten."""
        record = self._get(session)
        output = self._join(record.outputs)
        record.outputs = []
        if record.finished:
            del self._sessions[session]
        return output

    def _groups(self, keys: list[int]) -> list[list[int]]:
        """New sessions, then the others (two calls: new sessions have no state to stack)."""
        new = [key for key in keys if self._sessions[key].state is None]
        going = [key for key in keys if self._sessions[key].state is not None]
        return [group for group in (new, going) if group]

    def _take_chunk(self, record: _Session) -> Any:
        buffer = self._concat(record.pieces)
        record.pieces = [buffer[self.chunk_size :]]
        record.pending -= self.chunk_size
        return buffer[: self.chunk_size]

    def _get(self, session: int) -> _Session:
        if session not in self._sessions:
            raise KeyError(f"no session {session}: open one with open() (pulled finished sessions are gone)")
        return self._sessions[session]

    def _check_samples(self, samples: Any) -> Any:
        """``samples`` as an (n,) array of this server's type, else an error."""
        raise NotImplementedError

    def _concat(self, pieces: list) -> Any:
        """(n_i,) arrays -> their concatenation (one may be empty)."""
        raise NotImplementedError

    def _zero_pad(self, rest: Any, amount: int) -> Any:
        """(n,) -> (n + amount,), zeros on the right."""
        raise NotImplementedError

    def _code(self, chunks: list, states: list) -> tuple[list, list]:
        """One batched step: (chunk_size,) samples of each session and their states (all ``None``: new
        streams, or all given) -> each session's output and new state."""
        raise NotImplementedError

    def _join(self, outputs: list) -> Any:
        """A session's outputs (each ``toks`` (t,), ``codes`` (t, bits), ``sig`` (m,)) as one output."""
        raise NotImplementedError
