"""WavLM encoder: upstream parity, state-dict layout, frame counts, causality, batch isolation, streaming."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from helpers.reference import (
    assert_close,
    assert_matches_listing,
    assert_same_state,
    initial_weights,
    load_reference,
    read_listing,
    seeded,
)

from focalcodec.wavlm import PositionalEmbedding, WavLM, relative_position_bucket

SMALL = {
    "hidden_dims": [32] * 7,
    "kernel_sizes": [10, 3, 3, 3, 3, 2, 2],
    "strides": [5, 2, 2, 2, 2, 2, 2],
    "num_layers": 2,
    "dim": 64,
    "ffn_dim": 128,
    "num_heads": 4,
    "conv_pos": 16,
    "conv_pos_groups": 4,
}
TINY = {**SMALL, "hidden_dims": [8] * 7, "num_layers": 1, "dim": 16, "ffn_dim": 32, "conv_pos": 5}


def reference_model(name: str, **overrides) -> tuple[WavLM, dict]:
    """The model of a parity file with its weights loaded strictly, in eval mode, and the file itself."""
    ref = load_reference(name)
    model = WavLM(**{**ref["config"], **overrides})
    model.load_state_dict(ref["state_dict"], strict=True)
    return model.eval(), ref


def random_model(seed: int = 0, **kwargs) -> WavLM:
    """A randomly initialised model in eval mode."""
    torch.manual_seed(seed)
    return WavLM(**kwargs).eval()


@pytest.mark.parametrize(
    ("name", "output", "call"),
    [
        ("wavlm", "feats", lambda m, i: m(i["sig"])),
        ("wavlm", "feats_length", lambda m, i: m(i["sig"], length=i["length"])),
        ("wavlm", "feats_short", lambda m, i: m(i["sig_short"])),
        ("wavlm_causal", "feats", lambda m, i: m(i["sig"])),
        ("wavlm_causal", "feats_short", lambda m, i: m(i["sig_short"])),
    ],
)
def test_parity_with_upstream(name, output, call):
    model, ref = reference_model(name)
    with torch.no_grad():
        feats = call(model, ref["inputs"])[0]
    assert_close(feats, ref["outputs"][output])


def test_initialisation_draws_upstreams_tensors():
    entry = initial_weights("wavlm")
    assert_same_state(seeded(WavLM, entry["config"]).state_dict(), entry["state_dict"])


@pytest.mark.parametrize("name", ["wavlm", "wavlm_causal"])
def test_reference_weights_are_upstreams_initialisation_plus_noise(name):
    ref = load_reference(name)
    assert_same_state(seeded(WavLM, ref["config"], noise=0.05).state_dict(), ref["state_dict"])


def test_relative_position_bucket_check_values():
    relative = torch.tensor([-900, -800, -100, -20, -1, 0, 1, 10, 100, 800, 900])
    expected = [159, 159, 87, 20, 1, 0, 161, 170, 247, 319, 319]
    assert relative_position_bucket(relative, num_buckets=320, max_distance=800).tolist() == expected


def test_relative_position_bias_is_a_function_of_key_minus_query():
    model = random_model(**TINY)
    table = model.encoder.relative_embedding.weight
    bias = model.encoder.position_bias(query_start=3, num_queries=5, key_start=1, num_keys=7)
    queries, keys = torch.arange(3, 8)[:, None], torch.arange(1, 8)[None, :]
    expected = table[relative_position_bucket(keys - queries, 320, 800)].permute(2, 0, 1)
    assert torch.equal(bias, expected)


def test_full_size_state_dict_matches_listing():
    listing = read_listing("WavLM6")
    with torch.device("meta"):
        model = WavLM(**listing.kwargs)
    assert_matches_listing(model, listing)
    assert listing.non_persistent == ["encoder.position_bias"]  # computed on the fly here: no buffer at all
    assert (model.sample_rate, model.downsample_factor, model.chunk_size) == (16000, 320, 1280)


def test_default_kwargs_are_the_recipe_config():
    listing = read_listing("WavLM6")
    with torch.device("meta"):
        default, recipe = WavLM(), WavLM(**listing.kwargs)
    assert {k: v.shape for k, v in default.state_dict().items()} == {
        k: v.shape for k, v in recipe.state_dict().items()
    }


def test_max_cached_steps_must_cover_the_window():
    with pytest.raises(ValueError, match="max_cached_steps"):
        WavLM(**TINY, window_size=64, max_cached_steps=63)
    WavLM(**TINY, window_size=64, max_cached_steps=0)
    WavLM(**TINY, window_size=64, max_cached_steps=64)


@pytest.mark.parametrize("num_samples", [1, 9, 10, 399, 400, 719, 720, 7777, 16000, 16001])
@pytest.mark.parametrize("causal", [False, True])
def test_frame_count(num_samples, causal):
    model = random_model(**TINY, causal=causal)
    with torch.no_grad():
        feats = model(torch.randn(2, num_samples))[0]
    # non-causal inputs shorter than a kernel are zero-padded up to it, so short inputs give one frame
    expected = math.ceil(num_samples / 320) if causal else max(1, (num_samples - 400) // 320 + 1)
    assert feats.shape == (2, expected, 16)


@pytest.mark.parametrize("kernel_size", [4, 5])
@pytest.mark.parametrize("causal", [False, True])
def test_positional_embedding_padding(kernel_size, causal):
    torch.manual_seed(0)
    module = PositionalEmbedding(dim=8, kernel_size=kernel_size, groups=2, causal=causal)
    x = torch.randn(2, 11, 8)
    weight, bias = module.conv.weight, module.conv.bias
    if causal:
        padded = F.pad(x.transpose(1, 2), (kernel_size - 1, 0), mode="replicate")
    else:  # 'same' with the extra frame of an even kernel dropped on the right
        padded = F.pad(x.transpose(1, 2), (kernel_size // 2, (kernel_size - 1) // 2))
    expected = x + F.gelu(F.conv1d(padded, weight, bias, groups=2)).transpose(1, 2)
    with torch.no_grad():
        torch.testing.assert_close(module(x)[0], expected)


@pytest.mark.parametrize("causal", [False, True])
def test_gradients_reach_every_parameter(causal):
    model = random_model(**SMALL, causal=causal).train()
    length = None if causal else torch.tensor([1.0, 0.7])
    model(torch.randn(2, 4000), length=length)[0].pow(2).mean().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert parameter.grad.abs().sum() > 0, name


def test_causal_output_ignores_samples_after_its_chunk():
    """Frame t covers samples up to 320 t (replicate left padding), and the frames of chunk c attend keys up
    to the chunk end, so chunk c depends on samples up to exactly ``320 ((c + 1) * chunk - 1)``."""
    model, ref = reference_model("wavlm_causal")
    chunk = 1 + ref["config"]["lookahead_size"]
    sig = ref["inputs"]["sig"][:1]
    with torch.no_grad():
        base = model(sig)[0]
        for c in (0, 1, 5):
            last_sample = 320 * ((c + 1) * chunk - 1)
            num_frames = (c + 1) * chunk
            after = sig.clone()
            after[:, last_sample + 1 :] = torch.randn_like(after[:, last_sample + 1 :])
            assert torch.equal(model(after)[0][:, :num_frames], base[:, :num_frames])
            at = sig.clone()
            at[:, last_sample] += 1.0
            change = (model(at)[0][:, :num_frames] - base[:, :num_frames]).abs().amax(dim=-1)[0]
            assert change[num_frames - chunk :].min() > 1e-3  # every frame of chunk c sees that sample
            assert torch.all(change[: num_frames - chunk] == 0)  # earlier chunks do not


def test_non_causal_output_depends_on_the_future():
    model, ref = reference_model("wavlm")
    sig = ref["inputs"]["sig"][:1]
    with torch.no_grad():
        base = model(sig)[0]
        late = sig.clone()
        late[:, -1000:] = 0.0
        assert (model(late)[0][:, 0] - base[:, 0]).abs().max() > 1e-4


@pytest.mark.parametrize("name", ["wavlm", "wavlm_causal"])
def test_batch_items_do_not_leak(name):
    model, ref = reference_model(name)
    sig = ref["inputs"]["sig"]
    with torch.no_grad():
        batched = model(sig)[0]
        alone = model(sig[:1])[0]
    torch.testing.assert_close(batched[:1], alone)


def test_length_mask_makes_padding_invisible():
    """A padded item with ``ceil(length * T)`` equal to its own frame count gives, on those frames, the
    output of the unpadded item: its CNN frames never see the padding, masked frames are zeroed like the
    positional convolution's own padding, and masked keys get no attention weight."""
    model, ref = reference_model("wavlm")
    sig = ref["inputs"]["sig"]
    short = sig[:1, :9999]  # (9999 - 400) // 320 + 1 = 30 frames
    padded = torch.cat([F.pad(short, (0, sig.shape[1] - short.shape[1])), sig[1:]])  # 49 frames
    length = torch.tensor([29.5 / 49, 1.0])  # ceil(29.5) = 30 valid frames
    with torch.no_grad():
        alone = model(short)[0]
        masked = model(padded, length=length)[0]
        unmasked = model(padded)[0]
    assert alone.shape[1] == 30
    torch.testing.assert_close(masked[:1, :30], alone)
    torch.testing.assert_close(masked[1:], model(sig[1:])[0])
    assert (unmasked[:1, :30] - alone).abs().max() > 1e-4  # without the mask the padding is seen


def test_non_causal_returns_empty_state_and_rejects_streaming_state():
    model = random_model(**TINY)
    with torch.no_grad():
        _, curr_pos, left_contexts, kv_caches = model(torch.randn(1, 3200))
    assert curr_pos.ndim == 0 and curr_pos.item() == 0
    assert left_contexts == [None] * 8 and kv_caches == [None]
    with pytest.raises(ValueError, match="causal=True"):
        model(torch.randn(1, 3200), curr_pos=curr_pos)


def stream(model: WavLM, sig: torch.Tensor, piece_size: int) -> tuple[torch.Tensor, torch.Tensor, list]:
    """Run ``model`` on consecutive pieces of ``sig``, carrying the state; concatenated frames."""
    curr_pos = left_contexts = kv_caches = None
    outputs = []
    for piece in sig.split(piece_size, dim=1):
        feats, curr_pos, left_contexts, kv_caches = model(piece, curr_pos, left_contexts, kv_caches)
        outputs.append(feats)
    return torch.cat(outputs, dim=1), curr_pos, kv_caches


@pytest.mark.parametrize(
    ("overrides", "num_samples", "chunks_per_call"),
    [
        ({}, 15000, 1),  # a short stream (47 < R frames): even the unpadded last piece equals one call
        ({"window_size": 6, "max_cached_steps": 0}, 15360, 1),  # R = 2 cached frames, the window is full
        ({"window_size": 8, "max_cached_steps": 0}, 15360, 3),  # several chunks per call, R = 4
        ({"window_size": 9, "lookahead_size": 2, "max_cached_steps": 0}, 15360, 2),  # chunk 960, R = 6
    ],
)
def test_streaming_by_chunks_equals_one_call(overrides, num_samples, chunks_per_call):
    model, ref = reference_model("wavlm_causal", **overrides)
    sig = ref["inputs"]["sig"][:, :num_samples]
    with torch.no_grad():
        full, full_pos, _, full_caches = model(sig)
        streamed, curr_pos, kv_caches = stream(model, sig, chunks_per_call * model.chunk_size)
    assert_close(streamed, full)
    R = model.encoder.window_size - model.chunk_size // 320  # window_size - (1 + lookahead_size)
    num_frames = full.shape[1]
    assert curr_pos.dtype == torch.long and curr_pos.ndim == 0
    assert curr_pos.item() == full_pos.item() == min(num_frames, R)
    for cache, full_cache in zip(kv_caches, full_caches, strict=True):
        assert cache.shape == full_cache.shape == (2, R, 4, 16, 2)  # fixed size, right-aligned
        assert_close(cache, full_cache)


def test_unpadded_last_piece_attends_to_the_cached_frames_and_itself():
    """Upstream's ragged last chunk: its T < 1 + lookahead frames see the R cached frames and themselves, one
    call on the whole signal lets them see ``window_size - T`` earlier frames instead. With one layer the
    stream's last frames are those of one call with a window of R + T frames (same keys and values)."""
    model = random_model(**TINY, causal=True, window_size=6, max_cached_steps=0)  # R = 2
    narrow = random_model(**TINY, causal=True, window_size=5, max_cached_steps=0)  # R + 3
    narrow.load_state_dict(model.state_dict())
    sig = torch.randn(2, 15000)  # 11 chunks, then 920 samples = 3 frames
    with torch.no_grad():
        streamed = stream(model, sig, model.chunk_size)[0]
        full = model(sig)[0]
        narrow_last = narrow(sig)[0][:, -3:]
    assert_close(streamed[:, :44], full[:, :44])
    assert (streamed[:, 44:] - full[:, 44:]).abs().max() > 1e-2
    assert_close(streamed[:, 44:], narrow_last)


def test_fresh_state_and_saturating_position():
    model = random_model(**TINY, causal=True, window_size=10, max_cached_steps=0)  # R = 6
    sig = torch.randn(1, 5 * model.chunk_size)
    curr_pos = left_contexts = kv_caches = None
    positions = []
    with torch.no_grad():
        for piece in sig.split(model.chunk_size, dim=1):
            _, curr_pos, left_contexts, kv_caches = model(piece, curr_pos, left_contexts, kv_caches)
            positions.append(curr_pos.item())
            assert kv_caches[0].shape == (1, 6, 4, 4, 2)
            assert [tuple(c.shape[1:]) for c in left_contexts] == [(1, 9)] + [(8, 2)] * 4 + [(8, 1)] * 2 + [
                (16, 4)
            ]
        first = model(sig[:, : model.chunk_size])[3][0]
    assert positions == [4, 6, 6, 6, 6]
    assert torch.all(first[:, :2] == 0) and torch.all(first[:, 2:].abs().sum((2, 3, 4)) > 0)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")  # shape tests: fixed for a fixed chunk length
def test_a_traced_streaming_step_is_valid_at_every_position():
    """One chunk with a given state traces to one graph: no Python value of ``curr_pos`` is baked in."""
    model, ref = reference_model("wavlm_causal", window_size=12, max_cached_steps=0)  # R = 8
    chunks = ref["inputs"]["sig"].split(model.chunk_size, dim=1)[:6]
    with torch.no_grad():
        state = model(chunks[0])[1:]
        traced = torch.jit.trace(model, (chunks[1], *state), check_trace=False)
        eager_state = traced_state = state
        for chunk in chunks[1:]:  # curr_pos 4, 8, 8, 8, 8: growing, then a full window
            eager, *eager_state = model(chunk, *eager_state)
            replay, *traced_state = traced(chunk, *traced_state)
            assert_close(replay, eager)
        assert torch.equal(traced_state[0], eager_state[0])


def test_state_is_not_modified_in_place():
    model, ref = reference_model("wavlm_causal", window_size=8, max_cached_steps=0)
    first, second = ref["inputs"]["sig"][:, :1280], ref["inputs"]["sig"][:, 1280:3840]
    with torch.no_grad():
        state = model(first)[1:]
        copied = copy.deepcopy(state)
        model(second, *state)
    assert torch.equal(state[0], copied[0])
    for ours, kept in zip([*state[1], *state[2]], [*copied[1], *copied[2]], strict=True):
        assert torch.equal(ours, kept)


@pytest.mark.parametrize("piece_size", [3, 100, 777])
def test_streaming_any_piece_size_without_lookahead(piece_size):
    """Without lookahead a frame needs no later frame, so any piece size reproduces the one-call output."""
    model, ref = reference_model("wavlm_causal", lookahead_size=0)
    sig = ref["inputs"]["sig"][:, :3000]
    with torch.no_grad():
        streamed, curr_pos, _ = stream(model, sig, piece_size)
        assert_close(streamed, model(sig)[0])
    assert curr_pos.item() == math.ceil(3000 / 320)


def test_scripted_model_equals_eager():
    model, ref = reference_model("wavlm_causal", window_size=8, max_cached_steps=0)
    scripted = torch.jit.script(model)
    sig = ref["inputs"]["sig"]
    with torch.no_grad():
        assert_close(scripted(sig)[0], model(sig)[0])
        assert_close(stream(scripted, sig, 2560)[0], stream(model, sig, 2560)[0])
    non_causal, ref = reference_model("wavlm")
    with torch.no_grad():
        sig, length = ref["inputs"]["sig"], ref["inputs"]["length"]
        assert_close(torch.jit.script(non_causal)(sig, length=length)[0], non_causal(sig, length=length)[0])
