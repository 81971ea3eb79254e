"""FocalEncoder / FocalDecoder: parity, state-dict layout, gradients, causality, batching, streaming."""

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

from focalcodec.focalnet import ChunkFeedForward, FocalDecoder, FocalEncoder, FocalModulation

PARITY_FILES = [
    "focal_encoder",
    "focal_encoder_downscale",
    "focal_encoder_options",
    "focal_encoder_causal",
    "focal_decoder",
    "focal_decoder_upscale",
    "focal_decoder_options",
    "focal_decoder_causal",
]

SMALL_FOCAL = dict(focal_window=14, focal_level=2, focal_factor=4)
SMALL_ENCODER = dict(input_dim=24, output_dim=5, hidden_dims=[16, 12, 8], **SMALL_FOCAL)
SMALL_DECODER = dict(input_dim=5, output_dim=24, hidden_dims=[8, 12, 16], **SMALL_FOCAL)
OPTIONS = dict(use_post_norm=True, use_layerscale=True, layerscale_init=0.1, normalize_modulator=True)


def _build(cls: type, seed: int = 0, **kwargs) -> torch.nn.Module:
    """A model in eval mode whose parameters are all perturbed (so that constant inits carry information)."""
    torch.manual_seed(seed)
    model = cls(**kwargs)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return model.eval()


def _module_listing(listing_name: str, prefix: str) -> tuple[dict, dict, int]:
    """Constructor kwargs, entries and parameter count of one sub-module of a ``FocalCodec_*`` listing."""
    listing = read_listing(listing_name)
    entries = {k[len(prefix) + 1 :]: v for k, v in listing.entries.items() if k.startswith(prefix + ".")}
    return listing.kwargs[f"{prefix}_config"], entries, sum(math.prod(s) for s, _ in entries.values())


# ---------------------------------------------------------------------------------------------- parity


@pytest.mark.parametrize("name", PARITY_FILES)
def test_parity(name: str) -> None:
    ref = load_reference(name)
    model = (FocalEncoder if name.startswith("focal_encoder") else FocalDecoder)(**ref["config"])
    model.load_state_dict(ref["state_dict"], strict=True)
    model.eval()
    with torch.no_grad():
        output = model(ref["inputs"]["x"])[0]
        output_short = model(ref["inputs"]["x_short"])[0]
    assert_close(output, ref["outputs"]["output"])
    assert_close(output_short, ref["outputs"]["output_short"])


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize(("name", "cls"), [("focal_encoder", FocalEncoder), ("focal_decoder", FocalDecoder)])
def test_initialisation_draws_upstreams_tensors(name: str, cls: type) -> None:
    """At the same seed, the same initial weights as upstream, registered in the same order."""
    entry = initial_weights(name)
    assert_same_state(seeded(cls, entry["config"]).state_dict(), entry["state_dict"])


@pytest.mark.parametrize("name", PARITY_FILES)
def test_reference_weights_are_upstreams_initialisation_plus_noise(name: str) -> None:
    """Every parity file (causal, options, down/upscaling) is upstream's seed-0 initialisation plus noise
    drawn in upstream's parameter order: both orders are ours too."""
    ref = load_reference(name)
    cls = FocalEncoder if name.startswith("focal_encoder") else FocalDecoder
    assert_same_state(seeded(cls, ref["config"], noise=0.05).state_dict(), ref["state_dict"])


def test_same_padding_matches_pytorch() -> None:
    """Non-causal level convolutions pad like ``padding='same'`` for odd (recipe) and even (hub) kernels."""
    torch.manual_seed(0)
    for focal_window, focal_factor in [(7, 2), (14, 4)]:
        modulation = FocalModulation(6, focal_window, 2, focal_factor).eval()
        x = torch.randn(2, 11, 6)
        z = modulation.in_proj(x)
        context, gates = z[..., 6:12].transpose(1, 2), z[..., 12:].transpose(1, 2)
        expected = 0.0
        for level, layer in enumerate(modulation.layers):
            conv = layer[0]
            context = F.gelu(F.conv1d(context, conv.weight, conv.bias, padding="same", groups=6))
            expected = expected + context * gates[:, level : level + 1]
        expected = expected + F.gelu(context.mean(-1, keepdim=True)) * gates[:, 2:]
        expected = modulation.out_proj(z[..., :6] * modulation.context_proj(expected).transpose(1, 2))
        with torch.no_grad():
            assert_close(modulation(x)[0], expected.detach())


# ------------------------------------------------------------------------------------- state-dict layout


@pytest.mark.parametrize("cls", [FocalEncoder, FocalDecoder])
def test_full_size_listing(cls: type) -> None:
    listing = read_listing(cls.__name__)
    with torch.device("meta"):
        model = cls(**listing.kwargs)
    assert_matches_listing(model, listing)


@pytest.mark.parametrize("cls", [FocalEncoder, FocalDecoder])
def test_recipe_focal_window_7_factor_2(cls: type) -> None:
    """The recipe's focal_window 7 / focal_factor 2 keeps the keys; only the level kernels become 7 and 9."""
    listing = read_listing(cls.__name__)
    with torch.device("meta"):
        state = cls(**{**listing.kwargs, "focal_window": 7, "focal_factor": 2}).state_dict()
    assert sorted(state) == sorted(listing.entries)
    for key, (shape, _) in listing.entries.items():
        if key.endswith(("modulation.layers.0.0.weight", "modulation.layers.1.0.weight")):
            shape = (*shape[:2], 7 if ".layers.0.0." in key else 9)
        assert tuple(state[key].shape) == shape, key


@pytest.mark.parametrize("listing_name", ["FocalCodec_50hz", "FocalCodec_25hz", "FocalCodec_12_5hz"])
@pytest.mark.parametrize(("prefix", "cls"), [("compressor", FocalEncoder), ("decompressor", FocalDecoder)])
def test_frame_rate_variant_listings(listing_name: str, prefix: str, cls: type) -> None:
    """25 Hz / 12.5 Hz compressors and decompressors: kernel-2 down/up convolutions, same keys."""
    kwargs, entries, num_parameters = _module_listing(listing_name, prefix)
    with torch.device("meta"):
        model = cls(**kwargs)
    state = model.state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == {k: s for k, (s, _) in entries.items()}
    assert sum(p.numel() for p in model.parameters()) == num_parameters
    factors = kwargs["downscale_factors" if prefix == "compressor" else "upscale_factors"]
    name = "downscale.downscale" if prefix == "compressor" else "upscale.upscale"
    assert [state[f"layers.{i}.{name}.weight"].shape[-1] for i in range(3)] == list(factors)


@pytest.mark.parametrize("factors", [[1, 1, 1], [2, 1, 1], [2, 2, 1]])
@pytest.mark.parametrize("causal", [False, True])
def test_encoder_output_lengths(factors: list, causal: bool) -> None:
    model = _build(FocalEncoder, **SMALL_ENCODER, downscale_factors=factors, causal=causal, window_size=8)
    assert model.downsample_factor == model.chunk_size == math.prod(factors)
    with torch.no_grad():
        for T in range(1, 12):
            expected = T
            for factor in factors:
                expected = math.ceil(expected / factor)
            assert model(torch.randn(1, T, 24))[0].shape == (1, expected, 5)


@pytest.mark.parametrize("factors", [[1, 1, 1], [1, 1, 2], [1, 2, 2]])
@pytest.mark.parametrize("causal", [False, True])
def test_decoder_output_lengths(factors: list, causal: bool) -> None:
    model = _build(FocalDecoder, **SMALL_DECODER, upscale_factors=factors, causal=causal, window_size=8)
    assert model.upsample_factor == math.prod(factors)
    assert model.chunk_size == 4
    with torch.no_grad():
        for T in range(1, 8):
            assert model(torch.randn(1, T, 5))[0].shape == (1, T * math.prod(factors), 24)


def test_refiner_only_when_causal_with_lookahead() -> None:
    assert not any(
        k.startswith("refiner")
        for k in FocalDecoder(**SMALL_DECODER, causal=True, lookahead_size=0).state_dict()
    )
    assert not any(k.startswith("refiner") for k in FocalDecoder(**SMALL_DECODER).state_dict())
    model = FocalDecoder(**SMALL_DECODER, causal=True, window_size=8, last_window_size=6, lookahead_size=2)
    assert isinstance(model.refiner, ChunkFeedForward)
    assert model.refiner.in_proj.weight.shape == (3 * 24, 3 * 24)
    assert model.layers[2].focal_block.modulation.layers[2][0].weight.shape == (16, 1, 6)
    assert model.layers[1].focal_block.modulation.layers[2][0].weight.shape == (12, 1, 8)


# -------------------------------------------------------------------------------------------- training

GRADIENT_CASES = [
    (FocalEncoder, dict(**SMALL_ENCODER, downscale_factors=[2, 1, 1])),
    (FocalEncoder, dict(**SMALL_ENCODER, **OPTIONS)),
    (FocalEncoder, dict(**SMALL_ENCODER, downscale_factors=[2, 2, 1], causal=True, window_size=8, **OPTIONS)),
    (FocalDecoder, dict(**SMALL_DECODER, upscale_factors=[1, 2, 2])),
    (FocalDecoder, dict(**SMALL_DECODER, **OPTIONS)),
    (FocalDecoder, dict(**SMALL_DECODER, upscale_factors=[1, 1, 2], causal=True, window_size=8, **OPTIONS)),
    # pre-norm with layerscale: residuals scaled and added in place (upstream's order)
    (
        FocalDecoder,
        dict(**SMALL_DECODER, causal=True, window_size=8, use_layerscale=True, layerscale_init=0.1),
    ),
]


@pytest.mark.parametrize(("cls", "kwargs"), GRADIENT_CASES)
def test_gradients_reach_every_parameter(cls: type, kwargs: dict) -> None:
    model = _build(cls, **kwargs).train()
    x = torch.randn(2, 13, kwargs["input_dim"], requires_grad=True)
    output = model(x)[0]
    (output * torch.randn_like(output)).sum().backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    assert x.grad.abs().sum() > 0


# ------------------------------------------------------------------------------------------- causality


@pytest.mark.parametrize("factors", [[1, 1, 1], [2, 2, 1]])
def test_encoder_is_causal(factors: list) -> None:
    """Output frame j depends on input frames <= j * downsample_factor only, and that bound is tight (a causal
    downscale by f sees the current frame and the f - 1 before it)."""
    model = _build(FocalEncoder, **SMALL_ENCODER, downscale_factors=factors, causal=True, window_size=8)
    D = model.downsample_factor
    x = torch.randn(2, 21, 24)
    with torch.no_grad():
        output = model(x)[0]
        for start in [1, 4, 9, 20]:
            perturbed = x.clone()
            perturbed[:, start:] += torch.randn_like(perturbed[:, start:])
            changed = model(perturbed)[0]
            first = -(-start // D)  # first output frame whose input span reaches `start`
            torch.testing.assert_close(changed[:, :first], output[:, :first], rtol=0, atol=1e-6)
            assert (changed[:, first] - output[:, first]).abs().max() > 1e-3


@pytest.mark.parametrize("factors", [[1, 1, 1], [1, 2, 1], [1, 1, 3]])
def test_decoder_is_causal_up_to_its_chunk(factors: list) -> None:
    """Output frame t depends on input frames <= (end of t's refiner chunk) // upsample_factor only."""
    model = _build(FocalDecoder, **SMALL_DECODER, upscale_factors=factors, causal=True, window_size=8)
    U, C = model.upsample_factor, model.chunk_size
    x = torch.randn(2, 13, 5)
    with torch.no_grad():
        output = model(x)[0]
        for start in [1, 3, 6, 12]:
            perturbed = x.clone()
            perturbed[:, start:] += torch.randn_like(perturbed[:, start:])
            changed = model(perturbed)[0]
            first = (start * U // C) * C  # start of the chunk holding the first affected output frame
            torch.testing.assert_close(changed[:, :first], output[:, :first], rtol=0, atol=1e-6)
            assert (changed[:, first] - output[:, first]).abs().max() > 1e-3


def test_decoder_without_lookahead_is_strictly_causal() -> None:
    model = _build(FocalDecoder, **SMALL_DECODER, causal=True, window_size=8, lookahead_size=0)
    x = torch.randn(1, 10, 5)
    with torch.no_grad():
        output = model(x)[0]
        perturbed = x.clone()
        perturbed[:, 5:] += 1.0
        torch.testing.assert_close(model(perturbed)[0][:, :5], output[:, :5], rtol=0, atol=1e-6)


# --------------------------------------------------------------------------------------------- batching


@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [
        (FocalEncoder, dict(**SMALL_ENCODER, downscale_factors=[2, 1, 1])),
        (FocalEncoder, dict(**SMALL_ENCODER, causal=True, window_size=8, **OPTIONS)),
        (FocalDecoder, dict(**SMALL_DECODER, upscale_factors=[1, 1, 2], **OPTIONS)),
        (FocalDecoder, dict(**SMALL_DECODER, causal=True, window_size=8)),
    ],
)
def test_batch_items_are_independent(cls: type, kwargs: dict) -> None:
    model = _build(cls, **kwargs)
    x = torch.randn(1, 15, kwargs["input_dim"])
    other = 10 * torch.randn(1, 15, kwargs["input_dim"])
    with torch.no_grad():
        alone = model(x)[0]
        batched = model(torch.cat([other, x]))[0]
    assert_close(batched[1:], alone)


# -------------------------------------------------------------------------------------------- streaming


def _stream(model: torch.nn.Module, x: torch.Tensor, sizes: list) -> torch.Tensor:
    outputs, state, start = [], None, 0
    for size in sizes:
        output, state = model(x[:, start : start + size], state)
        outputs.append(output)
        start += size
    return torch.cat(outputs, dim=1)


@pytest.mark.parametrize("factors", [[1, 1, 1], [2, 1, 1]])
def test_encoder_streaming_matches_full_sequence(factors: list) -> None:
    model = _build(FocalEncoder, **SMALL_ENCODER, downscale_factors=factors, causal=True, window_size=8)
    x = torch.randn(2, 25, 24)
    with torch.no_grad():
        full, state = model(x)
        streamed = _stream(model, x, [2, 4, 10, 2, 7])
    assert len(state) == 3 and [len(s) for s in state] == [4, 4, 4]
    factor = factors[0]
    assert state[0][0].shape == (2, 24, max(factor - 1, 1))  # downscale context (placeholder for factor 1)
    assert state[0][0].shape[-1] == 1 and torch.equal(state[0][0], x[:, -factor:].transpose(1, 2)[..., -1:])
    assert [s.shape for s in state[0][1:]] == [(2, 16, 13), (2, 16, 17), (2, 16, 7)]  # window: last 8 - 1
    assert_close(streamed, full)


def test_causal_downscale_sees_the_current_and_previous_frames() -> None:
    """Causal factor f: output frame j is the convolution of input frames ``[j f - f + 1, j f]``, the first
    frame repeated before the start (spec: replicate left context of ``f - 1`` frames)."""
    model = _build(FocalEncoder, **SMALL_ENCODER, downscale_factors=[2, 1, 1], causal=True, window_size=8)
    downscale = model.layers[0].downscale
    x = torch.randn(2, 7, 24)
    padded = torch.cat([x[:, :1], x], dim=1).transpose(1, 2)
    conv = downscale.downscale
    expected = downscale.activation(F.conv1d(padded, conv.weight, conv.bias, stride=2).transpose(1, 2))
    with torch.no_grad():
        output, context = downscale(x)
        torch.testing.assert_close(output, expected)
    assert output.shape == (2, 4, 16) and torch.equal(context, x[:, -1:].transpose(1, 2))


def test_decoder_streaming_matches_full_sequence() -> None:
    model = _build(FocalDecoder, **SMALL_DECODER, upscale_factors=[1, 2, 1], causal=True, window_size=8)
    x = torch.randn(2, 17, 5)
    with torch.no_grad():
        full = model(x)[0]
        streamed = _stream(model, x, [2, 6, 4, 2, 3])
    assert_close(streamed, full)


@pytest.mark.parametrize("cls", [FocalEncoder, FocalDecoder])
def test_non_causal_state(cls: type) -> None:
    kwargs = SMALL_ENCODER if cls is FocalEncoder else SMALL_DECODER
    model = _build(cls, **kwargs)
    x = torch.randn(1, 6, kwargs["input_dim"])
    with torch.no_grad():
        output, state = model(x)
        assert state == [None, None, None]
        assert_close(model(x, state)[0], output)  # passing the returned state back is allowed
        with pytest.raises(ValueError, match="causal"):
            model(x, [[torch.zeros(1, 1, 1)]] * 3)
