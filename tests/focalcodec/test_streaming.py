"""Chunk-by-chunk coding with a causal FocalCodec (focalcodec/streaming.py): upstream's streaming vectors (one
and two chunks per call, unpadded last chunk, states), the encoder/decoder-side split, ended streams,
untouched states, the ``CodecStream`` helper, lookahead 2, and TorchScript (``jit``:
focalcodec/scripting.py)."""

import copy
import math

import pytest
import torch
from helpers.reference import assert_close, load_reference, read_listing, reference_codec, seeded

from focalcodec.bsq import BinarySphericalQuantizer
from focalcodec.codec import FocalCodec
from focalcodec.streaming import CodecStream, EndedState, StreamEndedError
from focalcodec.wavenext import WaveNeXt

CHUNK = 1280


@pytest.fixture(scope="module")
def stream_ref() -> tuple[FocalCodec, dict]:
    """The small causal codec of ``focalcodec_stream_e2e.pt`` and the file."""
    return reference_codec("focalcodec_stream_e2e")


@pytest.fixture(scope="module")
def scripted(stream_ref) -> FocalCodec:
    return stream_ref[0].jit()


def run_stream(model: FocalCodec, sig: torch.Tensor, step: int) -> tuple[list, list, list]:
    """Upstream's ``test_causality`` loop: ``toks, codes, rec, *state = model(chunk, *state, ...)``."""
    state, toks, recs = [], [], []
    with torch.no_grad():
        for chunk in sig.split(step, dim=1):
            toks_i, _, rec_i, *state = model(chunk, *state, return_state=True)
            toks.append(toks_i)
            recs.append(rec_i)
    return toks, recs, state


def assert_chunks(ours: list, theirs: list, exact: bool) -> None:
    assert len(ours) == len(theirs)
    for piece, expected in zip(ours, theirs, strict=True):
        assert piece.shape == expected.shape
        if exact:
            assert torch.equal(piece, expected)
        else:
            assert_close(piece, expected)


def assert_same_nested(actual, expected, exact: bool = True) -> None:
    """Same nesting, ``None`` where ``None``, and bit-identical (or close) tensors."""
    if isinstance(expected, torch.Tensor):
        assert isinstance(actual, torch.Tensor)
        if exact:
            assert torch.equal(actual, expected)
        else:
            assert_close(actual, expected)
    elif expected is None:
        assert actual is None
    else:
        assert len(actual) == len(expected)
        for a, e in zip(actual, expected, strict=True):
            assert_same_nested(a, e, exact)


def small_causal_config(lookahead_size: int, window_size: int) -> dict:
    """The stream vector's codec with another lookahead and attention window."""
    config = copy.deepcopy(load_reference("focalcodec_stream_e2e")["config"])
    config["encoder_config"].update(
        lookahead_size=lookahead_size, window_size=window_size, max_cached_steps=0
    )
    config["decompressor_config"]["lookahead_size"] = lookahead_size
    return config


# --------------------------------------------------------------------------------------------------
# Upstream's vectors


def test_properties(stream_ref) -> None:
    """The offline outputs of the vector are checked in test_codec.py::test_reference."""
    model, _ = stream_ref
    assert (model.causal, model.chunk_size, model.latency) == (True, CHUNK, 80.0)
    assert (model.sample_rate_input, model.sample_rate_output) == (16000, 24000)
    with pytest.raises(RuntimeError, match="differ"):
        model.sample_rate  # noqa: B018


@pytest.mark.parametrize(("chunks_per_call", "key"), [(1, "stream_"), (2, "stream_multi_")])
def test_stream_reference(stream_ref, chunks_per_call: int, key: str) -> None:
    model, ref = stream_ref
    out = ref["outputs"]
    toks, recs, _ = run_stream(model, ref["inputs"]["sig"], chunks_per_call * CHUNK)
    assert_chunks(toks, out[f"{key}toks_chunks"], exact=True)
    assert_chunks(recs, out[f"{key}rec_sig_chunks"], exact=False)
    assert torch.equal(torch.cat(toks, dim=1), out[f"{key}toks"])
    assert_close(torch.cat(recs, dim=1), out[f"{key}rec_sig"])
    # ... which is the offline result
    assert torch.equal(torch.cat(toks, dim=1), out["forward_toks"])
    assert_close(torch.cat(recs, dim=1), out["forward_rec_sig"])


def test_stream_reference_codes(stream_ref) -> None:
    model, ref = stream_ref
    state, codes = [], []
    with torch.no_grad():
        for chunk in ref["inputs"]["sig"].split(CHUNK, dim=1):
            _, codes_i, _, *state = model(chunk, *state, return_state=True)
            codes.append(codes_i)
    assert torch.equal(torch.cat(codes, dim=1), ref["outputs"]["stream_codes"])


def test_unpadded_last_chunk_reference(stream_ref) -> None:
    """700 samples after 12 chunks: upstream's result for an unpadded last chunk, and the stream ends."""
    model, ref = stream_ref
    sig, out = ref["inputs"]["sig_ragged"], ref["outputs"]
    toks, recs, state = run_stream(model, sig, CHUNK)
    assert_chunks(toks, out["stream_ragged_toks_chunks"], exact=True)
    assert_chunks(recs, out["stream_ragged_rec_sig_chunks"], exact=False)
    assert torch.equal(torch.cat(toks, dim=1), out["stream_ragged_toks"])
    assert_close(torch.cat(recs, dim=1), out["stream_ragged_rec_sig"])
    assert recs[-1].shape == (2, 1050)  # int(700 * 24000 / 16000)
    feats, encoder_state = [], []
    with torch.no_grad():
        for chunk in sig.split(CHUNK, dim=1):
            feats_i, encoder_state = model.sig_to_feats(chunk, encoder_state, return_state=True)
            feats.append(feats_i)
        assert_close(torch.cat(feats, dim=1), out["stream_ragged_feats"])
        # offline, the last frames see more past frames: they differ, everything before is the same
        ragged_toks, _, ragged_rec = model(sig)
        assert_close(model.sig_to_feats(sig), out["ragged_feats"])
    assert torch.equal(ragged_toks, out["ragged_forward_toks"])
    assert_close(ragged_rec, out["ragged_forward_rec_sig"])
    assert torch.equal(ragged_toks[:, :48], torch.cat(toks, dim=1)[:, :48])
    assert not torch.equal(ragged_toks[:, 48:], torch.cat(toks, dim=1)[:, 48:])
    # the call ended the encoder's stream (700 samples) and the decompressor's (3 code frames)
    assert [isinstance(s, EndedState) for s in state] == [True, False, True, False]
    assert isinstance(encoder_state, EndedState)


def test_states_match_upstream(stream_ref) -> None:
    """Same contents as upstream's state (ours channels-first; our KV cache keeps the last R = 12 frames
    right-aligned, upstream's the same frames first in a 16-row buffer)."""
    model, ref = stream_ref
    sig = ref["inputs"]["sig"]
    with torch.no_grad():
        after_first = model(sig[:, :CHUNK], return_state=True)[3:]
        final = run_stream(model, sig, CHUNK)[2]
    for ours, theirs in [
        (after_first, ref["states"]["stream_state_after_chunk0"]),
        (final, ref["states"]["stream_state_final"]),
    ]:
        (curr_pos, conv_contexts, kv_caches), (up_pos, up_contexts, up_caches) = ours[0], theirs[0]
        assert curr_pos.dtype == torch.long and curr_pos.ndim == 0 and torch.equal(curr_pos, up_pos)
        for context, expected in zip(conv_contexts, up_contexts, strict=True):
            assert_close(context.transpose(1, 2), expected)
        valid = int(curr_pos)
        for cache, expected in zip(kv_caches, up_caches, strict=True):
            assert cache.shape == (2, 12, 4, 16, 2)
            assert_close(cache[:, 12 - valid :], expected[:, :valid])
            assert torch.all(cache[:, : 12 - valid] == 0)
        for part in (1, 2, 3):
            flat = [c for layer in ours[part][0] for c in (layer if isinstance(layer, list) else [layer])]
            expected = [
                c for layer in theirs[part][0] for c in (layer if isinstance(layer, list) else [layer])
            ]
            for context, want in zip(flat, expected, strict=True):
                assert_close(context.transpose(1, 2), want)


def shapes(state) -> list | tuple | str:
    """The nested shapes of a state ("scalar" for 0-dim tensors)."""
    if isinstance(state, torch.Tensor):
        return tuple(state.shape) if state.ndim else "scalar"
    return [shapes(item) for item in state]


def test_released_model_state_layout() -> None:
    """The full-size causal model (shapes only, on the meta device): 48 state tensors, as upstream's."""
    with torch.device("meta"):
        model = FocalCodec(**read_listing("FocalCodec_50hz_4k_causal").kwargs).eval()
        with torch.no_grad():
            _, _, rec, *state = model(torch.zeros(1, CHUNK), return_state=True)
            toks, codes, rec, *state = model(torch.zeros(1, CHUNK), *state, return_state=True)
    assert (toks.shape, codes.shape, rec.shape) == ((1, 4), (1, 4, 12), (1, 1920))
    encoder, compressor, decompressor, decoder = (shapes(part) for part in state)
    contexts = [(1, 1, 9), *[(1, 512, 2)] * 4, *[(1, 512, 1)] * 2, (1, 1024, 127)]
    assert encoder == ["scalar", contexts, [(1, 508, 16, 64, 2)] * 6]  # R = 512 - 4 cached frames
    focal = [(1, 1024, 13), (1, 1024, 17), (1, 1024, 511)]
    assert compressor == [[[(1, 1024, 1), *focal]] * 3]
    assert decompressor == [[[*focal, (1, 1024, 1)]] * 3]
    assert decoder == [[(1, 1024, 6)] * 9]
    count = lambda tree: 1 if isinstance(tree, torch.Tensor) else sum(count(item) for item in tree)  # noqa: E731
    assert count(state) == 48


# --------------------------------------------------------------------------------------------------
# Calling convention


def test_encoder_and_decoder_sides_equal_forward(stream_ref) -> None:
    """``demo.py``: ``sig_to_toks`` on one side, ``toks_to_sig`` (no trimming) on the other."""
    model, ref = stream_ref
    sig = ref["inputs"]["sig"]
    toks, recs, _ = run_stream(model, sig, CHUNK)
    enc = comp = decomp = dec = ()
    with torch.no_grad():
        for chunk, expected_toks, expected_rec in zip(sig.split(CHUNK, dim=1), toks, recs, strict=True):
            toks_i, enc, comp = model.sig_to_toks(chunk, enc, comp, return_state=True)
            rec_i, decomp, dec = model.toks_to_sig(toks_i, decomp, dec, return_state=True)
            assert torch.equal(toks_i, expected_toks)
            assert torch.equal(rec_i, expected_rec)


def test_every_transform_streams(stream_ref) -> None:
    """Each transform with its own states, chunk by chunk, gives its offline output."""
    model, ref = stream_ref
    sig, out = ref["inputs"]["sig"], ref["outputs"]
    calls = [  # (method, full input, chunk, number of states, offline output)
        ("sig_to_feats", sig, CHUNK, 1, out["feats"]),
        ("sig_to_lats", sig, CHUNK, 2, out["lats"]),
        ("sig_to_codes", sig, CHUNK, 2, out["codes"]),
        ("sig_to_qfeats", sig, CHUNK, 3, out["qfeats"]),
        ("sig_to_sig", sig, CHUNK, 4, out["forward_rec_sig"]),
        ("feats_to_toks", out["feats"], 4, 1, out["toks"]),
        ("feats_to_codes", out["feats"], 4, 1, out["codes"]),
        ("feats_to_qfeats", out["feats"], 4, 2, out["qfeats"]),
        ("codes_to_qfeats", out["codes"], 4, 1, out["qfeats"]),
        ("lats_to_qfeats", out["lats"], 4, 1, out["qfeats"]),
        ("toks_to_qfeats", out["toks"], 4, 1, out["qfeats"]),
        ("feats_to_sig", out["qfeats"], 4, 1, out["rec_sig_from_toks"]),
        ("codes_to_sig", out["codes"], 4, 2, out["rec_sig_from_toks"]),
    ]
    with torch.no_grad():
        for method, full, chunk, num_states, expected in calls:
            states, pieces = [()] * num_states, []
            for piece in full.split(chunk, dim=1):
                output, *states = getattr(model, method)(piece, *states, return_state=True)
                pieces.append(output)
            assert len(states) == num_states
            assert_close(torch.cat(pieces, dim=1).float(), expected.float())


def test_ended_stream_is_an_error(stream_ref) -> None:
    model, ref = stream_ref
    sig = ref["inputs"]["sig"]
    with torch.no_grad():
        state = model(sig[:, :CHUNK], return_state=True)[3:]
        for size in (700, 640, 2000):  # not a whole number of chunks (640: two whole frames)
            ended = model(sig[:, CHUNK : CHUNK + size], *state, return_state=True)[3:]
            assert isinstance(ended[0], EndedState)
            with pytest.raises(StreamEndedError, match=rf"encoder_state.*ended.*{size} samples.*1280"):
                model(sig[:, 2 * CHUNK : 3 * CHUNK], *ended, return_state=True)
            with pytest.raises(StreamEndedError, match="encoder_state"):
                model.sig_to_toks(sig[:, 2 * CHUNK : 3 * CHUNK], ended[0], ended[1])
        # frame-level inputs: 3 codes do not fill the decompressor's refiner chunk of 4 frames
        codes = ref["outputs"]["codes"]
        _, decomp, dec = model.codes_to_sig(codes[:, :3], return_state=True)
        assert isinstance(decomp, EndedState) and not isinstance(dec, EndedState)
        with pytest.raises(StreamEndedError, match="decompressor_state"):
            model.codes_to_sig(codes[:, 3:7], decomp, dec)
        # the compressor and the decoder are exact for any number of frames: their streams go on
        _, comp = model.feats_to_lats(ref["outputs"]["feats"][:, :3], return_state=True)
        assert not isinstance(comp, EndedState)
        # an ended state deep-copies as an ended state
        assert isinstance(copy.deepcopy(ended[0]), EndedState)


def test_states_are_never_modified_in_place(stream_ref) -> None:
    model, ref = stream_ref
    sig = ref["inputs"]["sig"]
    with torch.no_grad():
        state = run_stream(model, sig[:, : 5 * CHUNK], CHUNK)[2]  # the window is full: the cache rolls
        kept = copy.deepcopy(state)
        first = model(sig[:, 5 * CHUNK : 7 * CHUNK], *state, return_state=True)
        assert_same_nested(state, kept)
        second = model(sig[:, 5 * CHUNK : 7 * CHUNK], *state, return_state=True)  # branch from the same state
        assert_same_nested(second, first)
        toks, *_ = model.sig_to_toks(sig[:, 5 * CHUNK : 6 * CHUNK], *state[:2], return_state=True)
        model.toks_to_sig(toks, *state[2:], return_state=True)
        assert_same_nested(state, kept)


def test_state_errors(stream_ref) -> None:
    model, ref = stream_ref
    sig = ref["inputs"]["sig"][:, :CHUNK]
    with torch.no_grad():
        state = model(sig, return_state=True)[3:]
        with pytest.raises(TypeError, match=r"decoder_state.*Tensor.*matching_set.*by keyword"):
            model.feats_to_sig(ref["outputs"]["qfeats"], ref["outputs"]["qfeats"][0])
        with pytest.raises(ValueError, match=r"encoder_state must have 3 entries"):
            model(sig, state[0][:2])
        with pytest.raises(ValueError, match="batch of 2, the input has 1"):
            model(sig[:1], *state)
    config = copy.deepcopy(ref["config"])
    config["decoder_config"]["causal"] = False
    partly_causal = FocalCodec(**config)  # a codec is causal only if all its parts are
    assert not partly_causal.causal and partly_causal.latency is None
    with pytest.raises(ValueError, match="needs a causal codec"):
        CodecStream(partly_causal)


def test_non_causal_models_do_not_stream() -> None:
    ref = load_reference("focalcodec_e2e")  # the non-causal 50 Hz-style codec (Vocos)
    model = FocalCodec(**ref["config"]).eval()
    sig = ref["inputs"]["sig"]
    with pytest.raises(ValueError, match="causal"):
        CodecStream(model)
    with torch.no_grad():
        *_, encoder_state, compressor_state, _, _ = model(sig[:, :CHUNK], return_state=True)
        with pytest.raises(ValueError, match=r"encoder_state: this WavLM is not causal"):
            model(sig[:, CHUNK : 2 * CHUNK], encoder_state)
        with pytest.raises(ValueError, match=r"compressor_state: this FocalEncoder is not causal"):
            model.feats_to_toks(ref["outputs"]["feats"], compressor_state)


# --------------------------------------------------------------------------------------------------
# CodecStream


@pytest.mark.parametrize(
    "sizes",
    [
        [16060],  # all at once
        [1] * 1500 + [14560],  # 1-sample pushes, then the rest
        [1279, 2, 1279, 1280, 5000, 7220],  # pushes that straddle chunks
        [700, 700, 3000, 0, 11660],
    ],
)
def test_codec_stream_equals_offline_on_the_padded_signal(stream_ref, sizes: list) -> None:
    model, ref = stream_ref
    sig = ref["inputs"]["sig_ragged"]  # 12 chunks and 700 samples
    padded = torch.nn.functional.pad(sig, (0, 13 * CHUNK - sig.shape[1]))
    stream = CodecStream(model)
    outputs, start = [], 0
    for size in sizes:
        outputs.append(stream.push(sig[:, start : start + size]))
        start += size
        assert stream.pending == start % CHUNK
    outputs.append(stream.flush())
    with torch.no_grad():
        toks, codes, rec = model(padded)
    assert torch.equal(torch.cat([o.toks for o in outputs], dim=1), toks)
    assert torch.equal(torch.cat([o.codes for o in outputs], dim=1), codes)
    assert_close(torch.cat([o.sig for o in outputs], dim=1), rec)
    assert [o.toks.shape[1] for o in outputs[:1]] == [4 * (sizes[0] // CHUNK)]
    with pytest.raises(StreamEndedError, match="flushed"):
        stream.push(sig[:, :10])
    with pytest.raises(StreamEndedError, match="flushed"):
        stream.flush()


def test_codec_stream_options(stream_ref) -> None:
    model, ref = stream_ref
    sig = ref["inputs"]["sig"]  # 12 whole chunks: the flush has nothing to pad
    encoder_only = CodecStream(model, decode=False)
    first = encoder_only.push(sig[:, :1000])
    assert first.toks.shape == (2, 0) and first.codes.shape == (2, 0, 12) and first.sig is None
    rest = encoder_only.push(sig[:, 1000:])
    last = encoder_only.flush()
    assert last.toks.shape == (2, 0) and last.sig is None
    assert torch.equal(torch.cat([first.toks, rest.toks, last.toks], dim=1), ref["outputs"]["toks"])
    with pytest.raises(ValueError, match=r"samples must have shape \(B, n\)"):
        CodecStream(model).push(sig[0])
    stream = CodecStream(model)
    stream.push(sig[:, :10])
    with pytest.raises(ValueError, match="1 items, the stream has 2"):
        stream.push(sig[:1, :10])
    with pytest.raises(ValueError, match="nothing was pushed"):
        CodecStream(model).flush()


# --------------------------------------------------------------------------------------------------
# Other configurations


@pytest.mark.parametrize(("window_size", "chunks_per_call"), [(18, 1), (18, 2), (18, 3), (16, 1)])
def test_lookahead_2(window_size: int, chunks_per_call: int) -> None:
    """960-sample chunks (60 ms). Several chunks per call are exact when they tile the window (18 = 6 x 3
    frames); with a window of 16 one chunk per call is, and so is CodecStream, which then calls per chunk."""
    model = seeded(FocalCodec, small_causal_config(2, window_size), seed=1, noise=0.05).eval()
    assert model.chunk_size == 960 and model.latency == 60.0
    torch.manual_seed(1)
    sig = 0.1 * torch.randn(2, 24 * 960)
    with torch.no_grad():
        toks, _, rec = model(sig)
    stream_toks, stream_recs, state = run_stream(model, sig, chunks_per_call * 960)
    assert torch.equal(torch.cat(stream_toks, dim=1), toks)
    assert_close(torch.cat(stream_recs, dim=1), rec)
    assert int(state[0][0]) == window_size - 3
    helper = CodecStream(model)
    outputs = [helper.push(piece) for piece in sig.split(2500, dim=1)] + [helper.flush()]
    assert torch.equal(torch.cat([o.toks for o in outputs], dim=1), toks)
    assert_close(torch.cat([o.sig for o in outputs], dim=1), rec)


def test_no_cached_position_table_and_other_sizes() -> None:
    """``max_cached_steps = 0`` (no effect here), a 3-frame window level and a zero-row KV cache."""
    config = small_causal_config(3, 4)  # R = window_size - 4 = 0 cached frames
    model = seeded(FocalCodec, config, seed=2, noise=0.05).eval()
    torch.manual_seed(2)
    sig = 0.1 * torch.randn(1, 6 * CHUNK)
    with torch.no_grad():
        toks, _, rec = model(sig)
    stream_toks, stream_recs, state = run_stream(model, sig, CHUNK)
    assert state[0][2][0].shape == (1, 0, 4, 16, 2) and int(state[0][0]) == 0
    assert torch.equal(torch.cat(stream_toks, dim=1), toks)
    assert_close(torch.cat(stream_recs, dim=1), rec)


# --------------------------------------------------------------------------------------------------
# TorchScript


def test_jit_scripts_every_part(stream_ref, scripted) -> None:
    model, _ = stream_ref
    for part in ("encoder", "compressor", "quantizer", "decompressor", "decoder"):
        assert isinstance(getattr(scripted, part), torch.jit.ScriptModule), part
        assert not isinstance(getattr(model, part), torch.jit.ScriptModule), part  # the original is untouched
    assert scripted.causal and scripted.chunk_size == CHUNK and scripted.sample_rate_output == 24000


def test_jit_equals_eager_offline_and_streaming(stream_ref, scripted) -> None:
    model, ref = stream_ref
    sig = ref["inputs"]["sig"]
    with torch.no_grad():
        for got, want in zip(scripted(sig), model(sig), strict=True):
            assert_close(got.float(), want.float())
        assert torch.equal(scripted.sig_to_toks(sig), ref["outputs"]["toks"])
    for step in (CHUNK, 2 * CHUNK):
        toks, recs, state = run_stream(scripted, sig, step)
        eager_toks, eager_recs, eager_state = run_stream(model, sig, step)
        assert_chunks(toks, eager_toks, exact=True)
        assert_chunks(recs, eager_recs, exact=False)
        assert_same_nested(state, eager_state, exact=False)
    outputs = [CodecStream(scripted).push(ref["inputs"]["sig"])]
    assert torch.equal(outputs[0].toks, ref["outputs"]["stream_toks"])


def test_jit_selected_classes_and_failures(stream_ref) -> None:
    model, ref = stream_ref
    only_decoder = model.jit(classes=[WaveNeXt])
    assert isinstance(only_decoder.decoder, torch.jit.ScriptModule)
    assert not isinstance(only_decoder.encoder, torch.jit.ScriptModule)

    class Unscriptable(BinarySphericalQuantizer):
        def forward(self, lats, *extra):  # variadic arguments do not script
            return super().forward(lats)

    broken = copy.deepcopy(model)
    broken.quantizer = Unscriptable(4096)
    with pytest.warns(UserWarning, match="Unscriptable 'quantizer' stays eager"):
        partly = broken.jit()
    assert not isinstance(partly.quantizer, torch.jit.ScriptModule)
    assert isinstance(partly.encoder, torch.jit.ScriptModule)
    with torch.no_grad():
        assert torch.equal(partly.sig_to_toks(ref["inputs"]["sig"]), ref["outputs"]["toks"])


def test_latency_follows_the_chunk() -> None:
    config = small_causal_config(1, 16)
    model = FocalCodec(**config)
    assert model.chunk_size == 640 and math.isclose(model.latency, 40.0)
