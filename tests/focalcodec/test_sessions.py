"""Many streams at once (focalcodec.sessions): sessions joining and leaving at different chunks, advanced
together by one batched step, each equal to its stream coded alone (tokens exact, audio within 1e-4), in
PyTorch (``CodecStreamServer``) and ONNX Runtime (``OnnxStreamServer``); the server's bookkeeping and errors.
"""

import numpy as np
import pytest
import torch
from helpers.reference import load_reference, reference_codec

from focalcodec.codec import FocalCodec
from focalcodec.streaming import CodecStreamServer, split_state, stack_states

CHUNK = 1280
AUDIO_TOLERANCE = 1e-4
# (first tick, samples) of each session: ragged and whole lengths, joining while others are mid-stream
# (before and after their 12-frame KV cache fills), one leaving before another joins
SCHEDULE = [(0, 6 * CHUNK + 300), (0, 2 * CHUNK), (2, 5 * CHUNK), (3, 3 * CHUNK + 1000), (6, 3 * CHUNK + 1)]


@pytest.fixture(scope="module")
def stream_ref() -> tuple:
    return reference_codec("focalcodec_stream_e2e")


@pytest.fixture(scope="module")
def signals() -> list[torch.Tensor]:
    """One signal per session: pieces of the vector's speech-like input and noise."""
    generator = torch.Generator().manual_seed(0)
    source = torch.cat([load_reference("focalcodec_stream_e2e")["inputs"]["sig"].flatten(), torch.zeros(1)])
    out = []
    for index, (_, length) in enumerate(SCHEDULE):
        start = (3000 * index) % (source.numel() - length)
        out.append(source[start : start + length] + 0.01 * torch.randn(length, generator=generator))
    return out


def alone(model: FocalCodec, sig: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The session's stream coded alone: batch 1, one zero-padded chunk per call."""
    padded = torch.nn.functional.pad(sig, (0, -sig.numel() % CHUNK))[None]
    state, outputs = [], []
    with torch.no_grad():
        for chunk in padded.split(CHUNK, dim=1):
            toks, codes, rec, *state = model(chunk, *state, return_state=True)
            outputs.append((toks[0], codes[0], rec[0]))
    return tuple(torch.cat(parts) for parts in zip(*outputs, strict=True))


def serve(server, signals: list, as_array) -> dict[int, list]:
    """Real time: each tick, every open session receives its next 80 ms (the last piece ragged) and the
    server steps once; sessions open at their first tick and close after their last piece; outputs are
    pulled every other tick and once a session is finished. Returns each session's pulled outputs."""
    keys, pulled, closed, done = {}, {}, set(), set()
    tick = 0
    while len(done) < len(SCHEDULE):
        for index, (first, length) in enumerate(SCHEDULE):
            if tick == first:
                keys[index], pulled[index] = server.open(), []
            if index in keys and index not in closed:
                offset = (tick - first) * CHUNK
                server.push(keys[index], as_array(signals[index][offset : offset + CHUNK]))
                if offset + CHUNK >= length:
                    server.close(keys[index])
                    closed.add(index)
        server.step()
        for index in set(keys) - done:
            if tick % 2 or (index in closed and server.pending(keys[index]) == 0):
                pulled[index].append(server.pull(keys[index]))
                if keys[index] not in server.sessions:
                    done.add(index)
        tick += 1
    assert server.sessions == []
    return pulled


@pytest.fixture(scope="module")
def expected(stream_ref, signals) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Each session's stream coded alone (computed once for every server)."""
    return [alone(stream_ref[0], sig) for sig in signals]


def assert_equal_alone(expected: list, pulled: dict) -> None:
    for index, (toks, codes, rec) in enumerate(expected):
        got = [np.concatenate([np.asarray(o[field]) for o in pulled[index]]) for field in range(3)]
        np.testing.assert_array_equal(got[0], toks.numpy())
        np.testing.assert_array_equal(got[1], codes.numpy())
        assert got[2].shape == rec.shape
        assert np.abs(got[2] - rec.numpy()).max() <= AUDIO_TOLERANCE


@pytest.mark.parametrize("max_batch", [None, 2])
def test_pytorch_sessions_equal_each_stream_alone(stream_ref, signals, expected, max_batch) -> None:
    model, _ = stream_ref
    server = CodecStreamServer(model, max_batch=max_batch)
    pulled = serve(server, signals, lambda piece: piece)
    assert_equal_alone(expected, pulled)


@pytest.mark.slow
def test_onnx_runtime_sessions_equal_each_stream_alone(tmp_path, stream_ref, signals, expected) -> None:
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (requirements.txt)")
    from focalcodec.onnx_runtime import OnnxCodec

    model, _ = stream_ref
    codec = OnnxCodec(model.onnx(tmp_path / "stream.onnx", return_state=True))
    pulled = serve(codec.server(), signals, lambda piece: piece.numpy())
    assert_equal_alone(expected, pulled)
    state = codec.step(np.zeros((1, CHUNK), np.float32))[1]
    mixed = [np.concatenate(pair) for pair in zip(state, codec.initial_state(1), strict=True)]
    with pytest.raises(ValueError, match="mixes new streams"):
        codec.step(np.zeros((2, CHUNK), np.float32), mixed)
    fixed = OnnxCodec(model.onnx(tmp_path / "fixed.onnx", batch_size=1, return_state=True))
    with pytest.raises(ValueError, match="without batch_size"):
        fixed.server()


def test_states_stack_and_split(stream_ref) -> None:
    """Per-stream positions: a stacked state's curr_pos is (B,), each split one 0-dim, as a stream's own."""
    model, ref = stream_ref
    with torch.no_grad():
        state = model(ref["inputs"]["sig"][:, :CHUNK], return_state=True)[3:]
    streams = split_state(state, 2)
    assert streams[0][0][0].ndim == 0 and streams[0][0][2][0].shape[0] == 1
    stacked = stack_states(streams)
    assert stacked[0][0].shape == (2,) and torch.equal(stacked[0][2][0], state[0][2][0])
    assert [s[0][0].ndim for s in split_state(stacked, 2)] == [0, 0]


def test_bookkeeping_and_errors(stream_ref) -> None:
    model, ref = stream_ref
    server = CodecStreamServer(model)
    a, b = server.open(), server.open()
    server.push(a, ref["inputs"]["sig"][0, :1000])
    assert server.ready() == [] and server.step() == [] and server.pending(a) == 1000
    empty = server.pull(a)
    assert empty.toks.shape == (0,) and empty.codes.shape == (0, 12) and empty.sig.shape == (0,)
    server.push(a, ref["inputs"]["sig"][0, 1000:3000])
    assert server.step() == [a] and server.pending(a) == 3000 - CHUNK
    server.close(a)  # 1720 pending: padded to two chunks
    assert server.pending(a) == 2 * CHUNK
    server.close(b)  # nothing pushed: finished at once
    assert server.pull(b).toks.shape == (0,) and server.sessions == [a]
    while server.step():
        pass
    assert server.pull(a).toks.shape == (12,) and server.sessions == []
    with pytest.raises(KeyError, match="no session 0"):
        server.push(a, ref["inputs"]["sig"][0, :10])
    c = server.open()
    server.close(c)
    with pytest.raises(ValueError, match="was closed"):
        server.push(c, ref["inputs"]["sig"][0, :10])
    with pytest.raises(ValueError, match=r"shape \(n,\)"):
        server.push(server.open(), ref["inputs"]["sig"][:, :10])
    with pytest.raises(ValueError, match="max_batch"):
        CodecStreamServer(model, max_batch=0)
    with pytest.raises(ValueError, match="causal"):
        CodecStreamServer(FocalCodec(**load_reference("focalcodec_e2e")["config"]))
