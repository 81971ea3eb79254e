"""WaveNeXt decoder: parity with the reference vectors (offline and streaming), state-dict layout, causality,
streaming, gradients and the linear head."""

import pytest
import torch
import torch.nn.functional as F
from helpers import decoders
from helpers.reference import (
    assert_close,
    assert_matches_listing,
    assert_same_state,
    load_reference,
    read_listing,
    seeded,
)

from focalcodec.wavenext import WaveNeXt

SMALL = {"input_dim": 64, "num_layers": 2, "dim": 48, "ffn_dim": 96, "kernel_size": 7}
HOP = 480


def small_wavenext(causal: bool = False, seed: int = 0, **overrides) -> WaveNeXt:
    """The reference config, with every parameter perturbed (as the vectors are) so none is trivial."""
    return seeded(WaveNeXt, {**SMALL, "causal": causal, **overrides}, seed=seed, noise=0.05).eval()


def channels_last(left_contexts: list[torch.Tensor]) -> list[torch.Tensor]:
    """Our ``(B, C, k - 1)`` contexts in upstream's ``(B, k - 1, C)`` layout."""
    return [context.transpose(1, 2) for context in left_contexts]


def reference_wavenext(model: WaveNeXt, x: torch.Tensor) -> torch.Tensor:
    """Independent functional re-statement of the spec (streaming.md §1), full sequence, no streaming."""
    k = model.kernel_size

    def conv(h: torch.Tensor, conv: torch.nn.Conv1d) -> torch.Tensor:  # (B, T, C) channels-last
        h = h.transpose(1, 2)
        if model.causal:
            out = F.conv1d(F.pad(h, (k - 1, 0)), conv.weight, conv.bias, groups=conv.groups)
        else:
            out = F.conv1d(h, conv.weight, conv.bias, padding="same", groups=conv.groups)
        return out.transpose(1, 2)

    def norm(h: torch.Tensor, ln: torch.nn.LayerNorm) -> torch.Tensor:
        return F.layer_norm(h, ln.normalized_shape, ln.weight, ln.bias, eps=1e-6)

    backbone = model.backbone
    h = norm(conv(x, backbone.embedding), backbone.input_norm)
    for block in backbone.layers:
        y = norm(conv(h, block.dwconv), block.norm)
        y = F.linear(
            F.gelu(F.linear(y, block.pwconv1.weight, block.pwconv1.bias)), *block.pwconv2.parameters()
        )
        h = h + block.gamma * y
    h = norm(h, backbone.output_norm)
    frames = F.linear(h, model.head.proj.weight, model.head.proj.bias)  # (B, T, hop)
    return torch.clamp(frames.reshape(x.shape[0], -1), -1.0, 1.0)


# --------------------------------------------------------------------------------------------------
# Parity and layout


@pytest.mark.parametrize("name", ["wavenext", "wavenext_causal"])
def test_reference(name: str) -> None:
    model, ref = decoders.reference_decoder(WaveNeXt, name)
    left_contexts = decoders.assert_reference_outputs(model, ref, HOP)
    if ref["config"]["causal"]:
        for ours, theirs in zip(
            channels_last(left_contexts), ref["states"]["left_contexts_offline"], strict=True
        ):
            assert_close(ours, theirs)
    else:
        assert left_contexts == [None] * 3


def test_reference_streaming() -> None:
    """Upstream's streaming outputs: one frame per call, then the irregular ``split_sizes`` chunks."""
    model, ref = decoders.reference_decoder(WaveNeXt, "wavenext_causal")
    x, outputs = ref["inputs"]["x"], ref["outputs"]
    with torch.no_grad():
        chunks, left_contexts = decoders.stream(model, x, [1] * x.shape[1])
        irregular, irregular_contexts = decoders.stream(model, x, ref["inputs"]["split_sizes"].tolist())
    for name, ours, theirs in [
        ("stream", chunks, outputs["stream_sig_chunks"]),
        ("stream_irregular", irregular, outputs["stream_irregular_sig_chunks"]),
    ]:
        assert len(ours) == len(theirs)
        for piece, expected in zip(ours, theirs, strict=True):
            assert_close(piece, expected)
        assert_close(torch.cat(ours, dim=1), outputs[f"{name}_sig"])
    (final_state,) = ref["states"]["stream_final_state"]
    for contexts in (left_contexts, irregular_contexts):
        for ours, theirs in zip(channels_last(contexts), final_state, strict=True):
            assert_close(ours, theirs)


@pytest.mark.parametrize("name", ["wavenext", "wavenext_causal"])
def test_reference_weights_are_upstreams_initialisation_plus_noise(name: str) -> None:
    """``manual_seed(0)``, our constructor, N(0, 0.05²) noise in ``parameters()`` order: the file's tensors
    bit for bit and in the same key order, so we draw the same initial weights as upstream at any seed."""
    ref = load_reference(name)
    assert_same_state(seeded(WaveNeXt, ref["config"], noise=0.05).state_dict(), ref["state_dict"])


def test_full_size_listing() -> None:
    listing = read_listing("WaveNeXt")
    model = WaveNeXt(**listing.kwargs)
    assert_matches_listing(model, listing)
    assert list(model.state_dict()) == list(listing.entries)
    assert len(listing.entries) == 80 and listing.num_parameters == 41_506_272
    assert list(model.named_buffers()) == [] and listing.non_persistent == []
    assert model.upsample_factor == 480 and model.chunk_size == 1 and model.causal
    assert_close(model.backbone.layers[3].gamma.detach(), torch.full((1024,), 1 / 8))


def test_non_causal_has_the_same_keys() -> None:
    causal, non_causal = WaveNeXt(**SMALL, causal=True), WaveNeXt(**SMALL, causal=False)
    shapes = {key: value.shape for key, value in causal.state_dict().items()}
    assert {key: value.shape for key, value in non_causal.state_dict().items()} == shapes


def test_constructor_kwargs() -> None:
    with pytest.raises(TypeError, match="unexpected"):
        WaveNeXt(**SMALL, dropout=0.1)
    with pytest.raises(TypeError, match="unexpected"):
        WaveNeXt(**SMALL, n_fft=1024)
    model = WaveNeXt(**SMALL, hop_length=320)
    assert model.upsample_factor == 320 and model.head.proj.out_features == 320
    assert model(torch.randn(1, 3, 64))[0].shape == (1, 3 * 320)


@pytest.mark.parametrize(("layerscale_init", "expected"), [(None, 1 / 2), (0.25, 0.25), (0.0, 0.0)])
def test_layerscale_init(layerscale_init: float | None, expected: float) -> None:
    model = WaveNeXt(**SMALL, layerscale_init=layerscale_init)
    assert all(torch.equal(layer.gamma, torch.full((48,), expected)) for layer in model.backbone.layers)


# --------------------------------------------------------------------------------------------------
# Behaviour


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize(
    "config",
    [
        {"causal": False},
        {"causal": True},
        {"causal": False, "kernel_size": 5, "num_layers": 3, "hop_length": 320},
        {"causal": True, "kernel_size": 5, "num_layers": 3, "hop_length": 320},
        {"causal": False, "kernel_size": 4},  # even kernel: 'same' pads one more frame on the right
    ],
)
def test_matches_functional_restatement_of_the_spec(config: dict) -> None:
    model = small_wavenext(**config)
    x = torch.randn(2, 11, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x)[0], reference_wavenext(model, x), rtol=0, atol=1e-6)


@pytest.mark.parametrize("causal", [False, True])
def test_gradients_reach_every_parameter(causal: bool) -> None:
    sig = decoders.assert_gradients_reach_every_parameter(small_wavenext(causal))
    assert 0 < (sig.abs() < 1).float().mean() < 1  # some samples are clipped, most are not


@pytest.mark.parametrize("num_frames", [1, 2, 7, 30])
@pytest.mark.parametrize("causal", [False, True])
def test_output_length(causal: bool, num_frames: int) -> None:
    contexts = [(3, 64, 6), (3, 48, 6), (3, 48, 6)]
    sig = decoders.assert_output_length(
        small_wavenext(causal), num_frames, HOP, SMALL["num_layers"], contexts
    )
    assert sig.abs().max() <= 1


@pytest.mark.parametrize("causal", [False, True])
def test_causality(causal: bool) -> None:
    decoders.assert_decoder_causality(small_wavenext(causal), HOP, causal)


def test_receptive_field() -> None:
    """Causal: 1 + num_layers convolutions of k - 1 = 6 past frames each, so frame t sees frames >= t - 18."""
    model = small_wavenext(causal=True)
    x = torch.randn(1, 30, 64)
    x_changed = x.clone()
    x_changed[:, 5] += 1.0
    with torch.no_grad():
        diff = (model(x)[0] - model(x_changed)[0]).abs().view(30, HOP).amax(dim=1)
    assert (diff[:5] == 0).all() and (diff[5 : 5 + 19] > 0).all() and (diff[5 + 19 :] == 0).all()


def test_causal_first_chunk_pads_zeros() -> None:
    """A fresh stream has all-zero left contexts (not copies of the first frame, as in Vocos)."""
    model = small_wavenext(causal=True)
    x = torch.randn(2, 5, 64)
    zeros = [torch.zeros(2, 64, 6), torch.zeros(2, 48, 6), torch.zeros(2, 48, 6)]
    replicated = [x[:, :1].transpose(1, 2).expand(2, 64, 6), *zeros[1:]]
    with torch.no_grad():
        sig = model(x)[0]
        assert torch.equal(model(x, zeros)[0], sig)
        assert torch.equal(model(x, [None, *zeros[1:]])[0], sig)  # None entries start fresh, individually
        assert not torch.allclose(model(x, replicated)[0][:, :HOP], sig[:, :HOP])


@pytest.mark.parametrize("chunks", [[1] * 12, [3, 1, 5, 3], [6, 6], [2, 7, 1, 2]])
def test_causal_streaming_matches_full_sequence(chunks: list[int]) -> None:
    model = small_wavenext(causal=True)
    x = torch.randn(2, sum(chunks), 64)
    with torch.no_grad():
        full, full_contexts = model(x)
        pieces, left_contexts = decoders.stream(model, x, chunks)
    assert [piece.shape[1] for piece in pieces] == [size * HOP for size in chunks]
    assert_close(torch.cat(pieces, dim=1), full)
    for ours, expected in zip(left_contexts, full_contexts, strict=True):
        assert_close(ours, expected)


def test_streaming_state_errors() -> None:
    causal = small_wavenext(causal=True)
    left_contexts = decoders.assert_streaming_state_errors(causal, small_wavenext(causal=False))
    with pytest.raises(ValueError, match="left contexts"):
        causal(torch.randn(1, 4, 64), [*left_contexts, left_contexts[-1]])


@pytest.mark.parametrize("causal", [False, True])
def test_batch_items_do_not_leak(causal: bool) -> None:
    decoders.assert_batch_items_do_not_leak(small_wavenext(causal))


# --------------------------------------------------------------------------------------------------
# Head


def test_head_lays_frames_out_in_order_and_clips() -> None:
    """Frame t fills samples ``[t * hop, (t + 1) * hop)`` in projection order, hard-clipped to [-1, 1]."""
    head = WaveNeXt(**SMALL).head
    num_frames = 6
    bias = torch.linspace(-2.0, 2.0, HOP)
    with torch.no_grad():
        head.proj.weight.zero_()
        head.proj.weight[:, 0] = 0.1
        head.proj.bias.copy_(bias)
        x = torch.zeros(2, num_frames, SMALL["dim"])
        x[..., 0] = torch.arange(num_frames, dtype=torch.float32)
        x[1, :, 0] *= -1
        sig = head(x)
    for b, sign in enumerate([1, -1]):
        expected = (bias + sign * 0.1 * torch.arange(num_frames)[:, None]).clamp(-1, 1).flatten()
        torch.testing.assert_close(sig[b], expected, rtol=0, atol=1e-6)
    assert sig.max() == 1 and sig.min() == -1
