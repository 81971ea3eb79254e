"""WavLM encoder: upstream parity, state-dict layout, frame counts, causality, batch isolation, streaming."""

import math

import pytest
import torch
import torch.nn.functional as F
from helpers import (
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


@pytest.mark.parametrize("overrides", [{}, {"window_size": 6, "max_cached_steps": 0}])
def test_streaming_by_chunks_equals_one_call(overrides):
    model, ref = reference_model("wavlm_causal", **overrides)
    sig = ref["inputs"]["sig"][:, :15000]  # not a whole number of chunks
    with torch.no_grad():
        full, full_pos, _, full_caches = model(sig)
        streamed, curr_pos, kv_caches = stream(model, sig, model.chunk_size)
    assert_close(streamed, full)
    assert curr_pos.item() == full_pos.item() == 47
    window = min(47, model.encoder.window_size)
    assert kv_caches[0].shape == full_caches[0].shape == (2, window, 4, 16, 2)


@pytest.mark.parametrize("piece_size", [3, 100, 777])
def test_streaming_any_piece_size_without_lookahead(piece_size):
    """Without lookahead a frame needs no later frame, so any piece size reproduces the one-call output."""
    model, ref = reference_model("wavlm_causal", lookahead_size=0)
    sig = ref["inputs"]["sig"][:, :3000]
    with torch.no_grad():
        streamed, curr_pos, _ = stream(model, sig, piece_size)
        assert_close(streamed, model(sig)[0])
    assert curr_pos.item() == math.ceil(3000 / 320)
