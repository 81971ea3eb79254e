"""ONNX export (``FocalCodec.onnx``, focalcodec/onnx_export.py) and the ONNX Runtime runner
(focalcodec/onnx_runtime.py): parity with PyTorch offline (non-causal Vocos model, causal WaveNeXt model)
and chunk by chunk with the state as graph inputs and outputs (from the first chunk on), the graphs' names
and axes, the exportable ISTFT, and errors."""

import numpy as np
import onnx
import pytest
import torch
from helpers.reference import reference_codec

from focalcodec import onnx_export
from focalcodec.onnx_export import _OfflineGraph, flatten_state, unflatten_state
from focalcodec.streaming import CodecStream
from focalcodec.vocos import ISTFT, Vocos, irfft_matrix
from focalcodec.wavenext import WaveNeXt

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (requirements.txt)")
from focalcodec.onnx_runtime import OnnxCodec, StreamEndedError  # noqa: E402 (needs onnxruntime)

CHUNK = 1280
AUDIO_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def offline_ref() -> tuple:
    """The non-causal (Vocos) reference codec and the file."""
    return reference_codec("focalcodec_e2e")


@pytest.fixture(scope="module")
def stream_ref() -> tuple:
    """The causal (WaveNeXt, 16 -> 24 kHz) reference codec and the file."""
    return reference_codec("focalcodec_stream_e2e")


@pytest.fixture(scope="module")
def exported(tmp_path_factory, offline_ref, stream_ref) -> dict[str, OnnxCodec]:
    """The three models, each exported once: both codecs offline (dynamic batch and time) and the causal
    one's streaming step (dynamic batch)."""
    folder = tmp_path_factory.mktemp("onnx")
    paths = {
        "offline": offline_ref[0].onnx(folder / "offline.onnx"),
        "causal": stream_ref[0].onnx(folder / "causal.onnx"),
        "stream": stream_ref[0].onnx(folder / "stream.onnx", return_state=True),
    }
    return {name: OnnxCodec(path) for name, path in paths.items()}


def assert_parity(onnx_outputs, torch_outputs) -> dict[str, float]:
    """Tokens and codes identical, audio within ``AUDIO_TOLERANCE``; returns the largest differences."""
    toks, codes, audio = (np.asarray(output) for output in onnx_outputs)
    expected = [output.numpy() for output in torch_outputs]
    assert toks.dtype == np.int64 and toks.shape == expected[0].shape
    np.testing.assert_array_equal(toks, expected[0])
    np.testing.assert_array_equal(codes, expected[1])
    assert audio.shape == expected[2].shape
    difference = float(np.abs(audio - expected[2]).max())
    assert difference <= AUDIO_TOLERANCE
    return {"audio": difference}


def torch_stream(model, sig: torch.Tensor) -> tuple[list, list]:
    """PyTorch's stream, one chunk per call: the outputs and the flat state after each chunk."""
    state, outputs, states = [], [], []
    with torch.no_grad():
        for chunk in sig.split(CHUNK, dim=1):
            results = model(chunk, *state, return_state=True)
            outputs.append(results[:3])
            state = list(results[3:])
            states.append(flatten_state(state))
    return outputs, states


# --------------------------------------------------------------------------------------------------
# Offline


@pytest.mark.parametrize(("batch", "samples"), [(2, 16000), (1, 5000), (3, 12345)])
def test_non_causal_offline_parity(exported, offline_ref, batch: int, samples: int) -> None:
    """Vocos (its ISTFT as matrix products in the graph) at lengths other than the traced example."""
    model, ref = offline_ref
    sig = ref["inputs"]["sig"].repeat(2, 1)[:batch, :samples]
    with torch.no_grad():
        expected = model(sig)
    assert_parity(exported["offline"](sig.numpy()), expected)


def test_non_causal_offline_reference_vector(exported, offline_ref) -> None:
    _, ref = offline_ref
    toks, codes, rec_sig = exported["offline"](ref["inputs"]["sig"])
    outputs = ref["outputs"]
    np.testing.assert_array_equal(toks, outputs["forward_toks"].numpy())
    np.testing.assert_array_equal(codes, outputs["forward_codes"].numpy())
    np.testing.assert_allclose(rec_sig, outputs["forward_rec_sig"].numpy(), rtol=0, atol=AUDIO_TOLERANCE)


@pytest.mark.parametrize(("batch", "samples"), [(2, 15360), (1, 16060), (2, 700)])
def test_causal_offline_parity(exported, stream_ref, batch: int, samples: int) -> None:
    """WaveNeXt, 16 kHz in and 24 kHz out (the output cut to 1.5 N samples), ragged lengths included."""
    model, ref = stream_ref
    sig = ref["inputs"]["sig_ragged"][:batch, :samples]
    with torch.no_grad():
        expected = model(sig)
    assert_parity(exported["causal"](sig), expected)


def test_offline_graph_equals_forward_in_eager(offline_ref, stream_ref) -> None:
    """The traced wrapper computes what ``forward`` computes (bit for bit, before export)."""
    for model, ref in (offline_ref, stream_ref):
        sig = ref["inputs"]["sig"][:, :7000]
        with torch.no_grad():
            for ours, theirs in zip(_OfflineGraph(model)(sig), model(sig), strict=True):
                assert torch.equal(ours, theirs)


# --------------------------------------------------------------------------------------------------
# Streaming


@pytest.mark.slow
def test_stream_parity_chunk_by_chunk(exported, stream_ref) -> None:
    """12 chunks (the 12-frame KV cache fills after 3): every chunk's outputs and state match PyTorch's
    stream, the first one included, and the whole stream matches upstream's vector."""
    model, ref = stream_ref
    sig = ref["inputs"]["sig"]
    expected, expected_states = torch_stream(model, sig)
    codec, state = exported["stream"], None
    toks = []
    for chunk, outputs, expected_state in zip(
        sig.split(CHUNK, dim=1), expected, expected_states, strict=True
    ):
        result, state = codec.step(chunk.numpy(), state)
        assert_parity(result, outputs)
        assert len(state) == len(expected_state) == 38
        assert int(state[0]) == int(expected_state[0])  # curr_pos
        for ours, theirs in zip(state[1:], expected_state[1:], strict=True):
            np.testing.assert_allclose(ours, theirs.numpy(), rtol=0, atol=1e-4)
        toks.append(result.toks)
    np.testing.assert_array_equal(np.concatenate(toks, axis=1), ref["outputs"]["stream_toks"].numpy())


def test_zero_state_starts_a_fresh_stream(exported, stream_ref) -> None:
    """Binding zeros to every state input (upstream's demo) gives PyTorch's first chunk, not the stream of a
    zero-initialised state; a returned state continues the stream."""
    model, ref = stream_ref
    chunks = ref["inputs"]["sig"][:1].split(CHUNK, dim=1)[:2]
    codec = exported["stream"]
    state = codec.initial_state(1)
    assert all(not array.any() for array in state)
    first, state = codec.step(chunks[0], state)
    with torch.no_grad():
        results = model(chunks[0], return_state=True)
        torch_state = list(results[3:])
        zeros = [torch.zeros_like(tensor) for tensor in flatten_state(torch_state)]
        zero_started = model(chunks[0], *unflatten_state(zeros, torch_state))
    assert_parity(first, results[:3])
    assert not torch.allclose(zero_started[2], results[2], atol=1e-3)  # what a zero state means in PyTorch
    second, _ = codec.step(chunks[1], state)
    with torch.no_grad():
        assert_parity(second, model(chunks[1], *torch_state, return_state=True)[:3])


def test_push_and_flush_equal_codec_stream(exported, stream_ref) -> None:
    """The numpy stream helper: ragged pushes, a zero-padded flush, a batch of 2 (dynamic batch)."""
    model, ref = stream_ref
    sig = ref["inputs"]["sig_ragged"][:, : 5 * CHUNK + 700]
    onnx_stream, torch_stream_ = exported["stream"].stream(), CodecStream(model)
    ours, theirs = [], []
    for start, stop in ((0, 1000), (1000, 1000), (1000, 4000), (4000, sig.shape[1])):
        ours.append(onnx_stream.push(sig[:, start:stop].numpy()))
        theirs.append(torch_stream_.push(sig[:, start:stop]))
        assert onnx_stream.pending == torch_stream_.pending
    ours.append(onnx_stream.flush())
    theirs.append(torch_stream_.flush())
    assert (
        ours[0].toks.shape == (2, 0) and ours[0].codes.shape == (2, 0, 12) and ours[0].rec_sig.shape == (2, 0)
    )
    joined = [
        np.concatenate([getattr(o, name) for o in ours], axis=1) for name in ("toks", "codes", "rec_sig")
    ]
    expected = [torch.cat([getattr(o, name) for o in theirs], dim=1) for name in ("toks", "codes", "sig")]
    assert_parity(joined, expected)
    with pytest.raises(StreamEndedError, match="flushed"):
        onnx_stream.push(sig[:, :10].numpy())


# --------------------------------------------------------------------------------------------------
# Graphs


def test_graph_names_axes_and_metadata(exported) -> None:
    offline, causal, stream = exported["offline"], exported["causal"], exported["stream"]
    inputs = offline.session.get_inputs()
    assert [value.name for value in inputs] == ["sig"] and inputs[0].shape == ["batch", "time"]
    assert [(value.name, value.shape) for value in offline.session.get_outputs()] == [
        ("toks", ["batch", "latent_time"]),
        ("codes", ["batch", "latent_time", 13]),
        ("rec_sig", ["batch", "time"]),
    ]
    assert causal.session.get_outputs()[2].shape == ["batch", "output_time"]  # 24 kHz out of 16 kHz
    assert not offline.streaming and stream.streaming and offline.batch_size is None
    assert (stream.chunk_size, stream.sample_rate_input, stream.sample_rate_output) == (CHUNK, 16000, 24000)
    names = [value.name for value in stream.session.get_inputs()]
    assert names == ["sig", *(f"input_state.{i}" for i in range(38))]
    outputs = stream.session.get_outputs()
    assert [value.name for value in outputs] == [
        "toks",
        "codes",
        "rec_sig",
        *(f"output_state.{i}" for i in range(38)),
    ]
    assert [value.shape for value in outputs[:4]] == [["batch", 4], ["batch", 4, 12], ["batch", 1920], []]
    assert stream.session.get_inputs()[1].type == "tensor(int64)"  # curr_pos
    assert stream.session.get_inputs()[-1].shape == ["batch", 48, 6]  # a WaveNeXt context


def test_fixed_batch_and_chunk_of_two(tmp_path, stream_ref) -> None:
    """``batch_size`` fixes axis 0; a stream step of 2 chunks (exact: the window is a multiple of 4)."""
    model, ref = stream_ref
    codec = OnnxCodec(
        model.onnx(tmp_path / "two.onnx", batch_size=2, chunk_size=2 * CHUNK, return_state=True)
    )
    assert codec.batch_size == 2 and codec.chunk_size == 2 * CHUNK
    assert codec.session.get_inputs()[0].shape == [2, 2 * CHUNK]
    state = None
    for i, chunk in enumerate(ref["inputs"]["sig"].split(2 * CHUNK, dim=1)[:3]):
        result, state = codec.step(chunk, state)
        np.testing.assert_array_equal(result.toks, ref["outputs"]["stream_multi_toks_chunks"][i].numpy())
    with pytest.raises(ValueError, match="exported for batches of 2"):
        codec.initial_state(1)
    with pytest.raises(ValueError, match=r"takes sig of shape \(2, 2560\)"):
        codec.step(np.zeros((2, CHUNK), np.float32), state)


def test_export_leaves_the_model_as_it_was(tmp_path, offline_ref) -> None:
    model, _ = offline_ref
    model.train()
    model.encoder.eval()  # e.g. a frozen encoder
    try:
        model.onnx(tmp_path / "m.onnx", chunk_size=3200)
        assert model.training and model.decoder.training and not model.encoder.training
        assert not model.decoder.head.istft.use_matmul
    finally:
        model.eval()
    assert OnnxCodec(tmp_path / "m.onnx").session.get_inputs()[0].shape == ["batch", 3200]


def test_large_weights_go_to_a_data_file(tmp_path, monkeypatch, stream_ref) -> None:
    monkeypatch.setattr(onnx_export, "_MAX_INLINE_BYTES", 0)
    model, ref = stream_ref
    path = model.onnx(tmp_path / "big.onnx", return_state=True)
    stored = onnx.load(str(path), load_external_data=False).graph.initializer
    external = [tensor for tensor in stored if tensor.data_location == onnx.TensorProto.EXTERNAL]
    assert len(external) > 50 and not any(tensor.raw_data for tensor in external)
    assert (tmp_path / "big.onnx.data").stat().st_size > 1_900_000  # the reference model's 2 MB of weights
    result, _ = OnnxCodec(path).step(ref["inputs"]["sig"][:, :CHUNK])
    np.testing.assert_array_equal(result.toks, ref["outputs"]["stream_toks_chunks"][0].numpy())


# --------------------------------------------------------------------------------------------------
# The exportable ISTFT


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(("n_fft", "hop"), [(1024, 320), (16, 4), (15, 5)])
def test_matmul_istft_equals_irfft(causal: bool, n_fft: int, hop: int) -> None:
    spec = torch.randn(2, n_fft // 2 + 1, 9, dtype=torch.cfloat, generator=torch.Generator().manual_seed(0))
    istft = ISTFT(n_fft, hop, causal)
    expected = istft(spec)
    istft.use_matmul = True
    torch.testing.assert_close(istft(spec), expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(istft.synthesise(spec.real, spec.imag), expected, rtol=0, atol=1e-5)
    matrix = irfft_matrix(n_fft, torch.float64, torch.device("cpu"))
    spec64 = spec.to(torch.cdouble)
    frames = matrix @ torch.cat([spec64.real, spec64.imag], dim=1)
    torch.testing.assert_close(frames, torch.fft.irfft(spec64, n=n_fft, dim=1), rtol=0, atol=1e-12)


@pytest.mark.parametrize("causal", [False, True])
def test_matmul_vocos_equals_eager(causal: bool) -> None:
    torch.manual_seed(0)
    model = Vocos(input_dim=16, num_layers=1, dim=16, ffn_dim=32, causal=causal).eval()
    feats = torch.randn(2, 7, 16)
    with torch.no_grad():
        expected = model(feats)[0]
        model.head.istft.use_matmul = True
        torch.testing.assert_close(model(feats)[0], expected, rtol=0, atol=1e-5)
    model.head.istft.use_matmul = False
    torch.jit.script(model)  # both paths script


# --------------------------------------------------------------------------------------------------
# Errors


def test_export_errors(tmp_path, offline_ref, stream_ref) -> None:
    with pytest.raises(ValueError, match="needs a causal codec"):
        offline_ref[0].onnx(tmp_path / "x.onnx", return_state=True)
    with pytest.raises(ValueError, match=r"multiple of the codec's chunk_size \(1280\)"):
        stream_ref[0].onnx(tmp_path / "x.onnx", chunk_size=1000, return_state=True)
    with pytest.raises(ValueError, match="sets dynamic_axes, input_names itself"):
        stream_ref[0].onnx(tmp_path / "x.onnx", input_names=["x"], dynamic_axes={})
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        stream_ref[0].onnx(tmp_path / "x.onnx", batch_size=0)
    with pytest.raises(ValueError, match="not a jit"):
        stream_ref[0].jit(classes=[Vocos, WaveNeXt]).onnx(tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


def test_runner_errors(exported, tmp_path) -> None:
    with pytest.raises(ValueError, match="stream model"):
        exported["stream"](np.zeros((1, CHUNK), np.float32))
    with pytest.raises(ValueError, match="offline model"):
        exported["offline"].step(np.zeros((1, CHUNK), np.float32))
    with pytest.raises(ValueError, match=r"sig\[None\]"):
        exported["offline"](np.zeros(CHUNK, np.float32))
    with pytest.raises(ValueError, match="must hold 38 arrays"):
        exported["stream"].step(np.zeros((1, CHUNK), np.float32), [])
    plain = tmp_path / "plain.onnx"
    torch.onnx.export(torch.nn.Linear(2, 2), (torch.zeros(1, 2),), str(plain), dynamo=False)
    with pytest.raises(ValueError, match=r"not written by FocalCodec\.onnx"):
        OnnxCodec(plain)
