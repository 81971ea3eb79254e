"""Buffering a signal into whole chunks for a stream (push pieces of any size, flush the zero-padded rest),
shared by ``focalcodec.streaming.CodecStream`` (torch tensors) and ``focalcodec.onnx_runtime.OnnxStream``
(numpy arrays). Imports neither torch nor numpy."""

from typing import Any

__all__ = ["ChunkBuffer", "StreamEndedError"]


class StreamEndedError(RuntimeError):
    """A stream that has ended was used again: a flushed stream, or a streaming call given the state of a
    stream that an incomplete chunk has ended."""


class ChunkBuffer:
    """Collect (B, n) pieces and code every whole chunk of ``chunk_size`` samples as soon as it is complete;
    :meth:`flush` codes the rest zero-padded to one chunk and ends the stream.

    Subclasses provide :meth:`_check_samples` (validation, conversion), :meth:`_concat` and :meth:`_zero_pad`
    for their array type, and :meth:`_code` (coding a whole number of chunks, ``(B, 0)`` included).

    Arguments
    ---------
    chunk_size : samples per chunk.
    """

    def __init__(self, chunk_size: int) -> None:
        self.chunk_size = chunk_size
        self._pending: Any = None
        self._ended = False

    @property
    def pending(self) -> int:
        """Samples pushed but not yet coded (less than one chunk)."""
        return 0 if self._pending is None else self._pending.shape[1]

    def push(self, samples: Any) -> Any:
        """Add ``samples`` (B, n), any n >= 0, and code every chunk they complete (none: empty outputs)."""
        self._check_open()
        samples = self._check_samples(samples)
        if self._pending is not None and samples.shape[0] != self._pending.shape[0]:
            raise ValueError(
                f"samples have {samples.shape[0]} items, the stream has {self._pending.shape[0]}"
            )
        buffer = samples if self._pending is None else self._concat(self._pending, samples)
        whole = buffer.shape[1] - buffer.shape[1] % self.chunk_size
        self._pending = buffer[:, whole:]
        return self._code(buffer[:, :whole])

    def flush(self) -> Any:
        """Code the pending samples zero-padded to one chunk (if any are pending) and end the stream."""
        self._check_open()
        if self._pending is None:
            raise ValueError("nothing was pushed: flush needs the batch size of a first push")
        self._ended = True
        rest = self._pending
        if rest.shape[1] > 0:
            rest = self._zero_pad(rest, self.chunk_size - rest.shape[1])
        self._pending = rest[:, :0]
        return self._code(rest)

    def _check_open(self) -> None:
        if self._ended:
            name = type(self).__name__
            raise StreamEndedError(f"this {name} was flushed: make a new one for a new stream")

    def _check_samples(self, samples: Any) -> Any:
        """``samples`` as a (B, n) array of this stream's type, else an error."""
        raise NotImplementedError

    def _concat(self, first: Any, second: Any) -> Any:
        """(B, n1) and (B, n2) -> (B, n1 + n2)."""
        raise NotImplementedError

    def _zero_pad(self, rest: Any, amount: int) -> Any:
        """(B, n) -> (B, n + amount), zeros on the right."""
        raise NotImplementedError

    def _code(self, sig: Any) -> Any:
        """Code (B, N) samples, a whole number of chunks, continuing the stream."""
        raise NotImplementedError
