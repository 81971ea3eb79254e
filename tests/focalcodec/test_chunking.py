"""Buffering a signal into whole chunks (focalcodec/chunking.py), with a numpy buffer that records what it
codes; the torch and ONNX streams built on it: tests/focalcodec/test_streaming.py, test_onnx.py."""

import numpy as np
import pytest

from focalcodec.chunking import ChunkBuffer, StreamEndedError


class Recorder(ChunkBuffer):
    """Codes a whole number of chunks by returning them (numpy arrays)."""

    def _check_samples(self, samples):
        return np.asarray(samples, dtype=np.float64)

    def _concat(self, first, second):
        return np.concatenate([first, second], axis=1)

    def _zero_pad(self, rest, amount):
        return np.pad(rest, ((0, 0), (0, amount)))

    def _code(self, sig):
        assert sig.shape[1] % self.chunk_size == 0
        return sig


def test_pieces_of_any_size_are_coded_chunk_by_chunk_and_the_rest_zero_padded() -> None:
    sig = np.arange(36.0).reshape(2, 18)
    stream, outputs, pending = Recorder(4), [], []
    start = 0
    for size in (3, 0, 5, 9, 1):
        outputs.append(stream.push(sig[:, start : start + size]))
        pending.append(stream.pending)
        start += size
    assert [out.shape[1] for out in outputs] == [0, 0, 8, 8, 0]  # each chunk as soon as it is complete
    assert pending == [3, 3, 0, 1, 2]
    rest = stream.flush()
    assert rest.shape == (2, 4) and stream.pending == 0
    assert np.array_equal(np.concatenate([*outputs, rest], axis=1), np.pad(sig, ((0, 0), (0, 2))))


def test_a_whole_number_of_chunks_flushes_nothing_and_ends_the_stream() -> None:
    stream = Recorder(4)
    assert stream.push(np.ones((1, 8))).shape == (1, 8)
    assert stream.flush().shape == (1, 0)
    with pytest.raises(StreamEndedError, match="was flushed"):
        stream.push(np.ones((1, 4)))
    with pytest.raises(StreamEndedError, match="was flushed"):
        stream.flush()


def test_misuse_is_an_error() -> None:
    with pytest.raises(ValueError, match="nothing was pushed"):
        Recorder(4).flush()
    stream = Recorder(4)
    stream.push(np.ones((2, 3)))
    with pytest.raises(ValueError, match="samples have 1 items, the stream has 2"):
        stream.push(np.ones((1, 3)))
