"""Vocos decoder: parity with the reference vectors, state-dict layout, causality, gradients and the ISTFT."""

import math

import pytest
import torch
import torch.nn.functional as F
from helpers import decoders
from helpers.reference import (
    assert_close,
    assert_matches_listing,
    assert_same_state,
    initial_weights,
    load_reference,
    read_listing,
    seeded,
)

from focalcodec.vocos import ISTFT, Vocos

SMALL = {"input_dim": 64, "num_layers": 2, "dim": 32, "ffn_dim": 64, "kernel_size": 7}
N_FFT, HOP = 1024, 320


def small_vocos(causal: bool = False, seed: int = 0) -> Vocos:
    # Perturb every parameter (as the reference vectors do) so that no gamma, norm or bias is trivial.
    return seeded(Vocos, {**SMALL, "causal": causal}, seed=seed, noise=0.05).eval()


# --------------------------------------------------------------------------------------------------
# Parity and layout


@pytest.mark.parametrize("name", ["vocos", "vocos_causal"])
def test_reference(name: str) -> None:
    decoders.assert_reference_outputs(*decoders.reference_decoder(Vocos, name), HOP)


@pytest.mark.parametrize("name", ["vocos", "vocos_causal"])
def test_initialisation_draws_upstreams_tensors(name: str) -> None:
    """At the same seed, the same initial weights as upstream (PyTorch's default initialisation)."""
    entry = initial_weights(name)
    assert_same_state(seeded(Vocos, entry["config"]).state_dict(), entry["state_dict"])


@pytest.mark.parametrize("name", ["vocos", "vocos_causal"])
def test_reference_weights_are_upstreams_initialisation_plus_noise(name: str) -> None:
    ref = load_reference(name)
    assert_same_state(seeded(Vocos, ref["config"], noise=0.05).state_dict(), ref["state_dict"])


def test_full_size_listing() -> None:
    listing = read_listing("Vocos")
    model = Vocos(**listing.kwargs)
    assert_matches_listing(model, listing)
    assert sum(p.numel() for p in model.parameters()) == 16_843_266
    buffers = {name for name, _ in model.named_buffers()}
    assert buffers == set(listing.non_persistent) == {"head.istft.window", "head.istft.window_sq"}
    assert model.upsample_factor == 320 and model.chunk_size == 1
    assert_close(model.backbone.layers[3].gamma.detach(), torch.full((512,), 1 / 8))


def test_deprecated_kwargs() -> None:
    with pytest.warns(DeprecationWarning):
        model = Vocos(input_dim=1024, input_channels=48, padding="same", num_layers=1, dim=16, ffn_dim=32)
    assert model.backbone.embedding.in_channels == 48
    assert model(torch.randn(1, 3, 48))[0].shape == (1, 3 * HOP)
    with pytest.raises(TypeError, match="unexpected"):
        Vocos(inputdim=48)


def test_layerscale_init() -> None:
    model = Vocos(**SMALL, layerscale_init=0.25)
    assert all(torch.equal(layer.gamma, torch.full((32,), 0.25)) for layer in model.backbone.layers)


# --------------------------------------------------------------------------------------------------
# Behaviour


@pytest.mark.parametrize("causal", [False, True])
def test_gradients_reach_every_parameter(causal: bool) -> None:
    decoders.assert_gradients_reach_every_parameter(small_vocos(causal))


@pytest.mark.parametrize("num_frames", [1, 2, 7, 30])
@pytest.mark.parametrize("causal", [False, True])
def test_output_length(causal: bool, num_frames: int) -> None:
    contexts = [(3, 64, 6), (3, 32, 6), (3, 32, 6)]
    decoders.assert_output_length(small_vocos(causal), num_frames, HOP, SMALL["num_layers"], contexts)


@pytest.mark.parametrize("causal", [False, True])
def test_causality(causal: bool) -> None:
    decoders.assert_decoder_causality(small_vocos(causal), HOP, causal)


@pytest.mark.parametrize("chunks", [[1] * 12, [3, 1, 5, 3], [6, 6]])
def test_causal_streaming_matches_full_sequence(chunks: list[int]) -> None:
    model = small_vocos(causal=True)
    x = torch.randn(2, sum(chunks), 64)
    with torch.no_grad():
        full = model(x)[0]
        pieces, _ = decoders.stream(model, x, chunks)
    assert_close(torch.cat(pieces, dim=1), full)


def test_streaming_state_errors() -> None:
    decoders.assert_streaming_state_errors(small_vocos(causal=True), small_vocos(causal=False))


@pytest.mark.parametrize("causal", [False, True])
def test_batch_items_do_not_leak(causal: bool) -> None:
    decoders.assert_batch_items_do_not_leak(small_vocos(causal))


# --------------------------------------------------------------------------------------------------
# ISTFT and head


def stft_same(sig: torch.Tensor) -> torch.Tensor:
    """(B, T * hop) -> (B, n_fft // 2 + 1, T): Hann-windowed frames ``t * hop - pad ... + n_fft``."""
    T, pad = sig.shape[-1] // HOP, (N_FFT - HOP) // 2
    padded = F.pad(sig, (pad, N_FFT))
    frames = padded.unfold(-1, N_FFT, HOP)[:, :T] * torch.hann_window(N_FFT)
    return torch.fft.rfft(frames, dim=-1).transpose(1, 2)


def test_istft_inverts_stft() -> None:
    sig = torch.randn(2, 13 * HOP, dtype=torch.float64)
    istft = ISTFT(N_FFT, HOP).double()
    assert torch.equal(istft.window, torch.hann_window(N_FFT, periodic=True).double())
    torch.testing.assert_close(istft(stft_same(sig)), sig, rtol=0, atol=1e-6)  # float32 window
    assert not torch.allclose(istft(stft_same(sig.roll(1, dims=-1))), sig, atol=1e-3)


def test_causal_istft_inverts_last_samples() -> None:
    sig = torch.randn(2, 13 * HOP, dtype=torch.float64)
    frames = F.pad(sig.view(2, 13, HOP), (N_FFT - HOP, 0))  # each frame ends with its own hop of samples
    spec = torch.fft.rfft(frames, dim=-1).transpose(1, 2)
    torch.testing.assert_close(ISTFT(N_FFT, HOP, causal=True).double()(spec), sig, rtol=0, atol=1e-10)


def window_gain(num_frames: int) -> torch.Tensor:
    """(num_frames * hop,) overlap-added window over overlap-added squared window, trimmed like the ISTFT.

    Unwindowed frames (a constant spectrum) come out of the non-causal ISTFT scaled by this gain."""
    pad, window = (N_FFT - HOP) // 2, torch.hann_window(N_FFT, dtype=torch.float64)
    ola, ola_sq = torch.zeros(2, (num_frames - 1) * HOP + N_FFT, dtype=torch.float64)
    for t in range(num_frames):
        ola[t * HOP : t * HOP + N_FFT] += window
        ola_sq[t * HOP : t * HOP + N_FFT] += window**2
    return (ola / ola_sq)[pad : pad + num_frames * HOP]


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(("log_magnitude", "amplitude"), [(math.log(3.0), 3.0), (math.log(1000.0), 100.0)])
def test_head_synthesises_a_cosine(causal: bool, log_magnitude: float, amplitude: float) -> None:
    """A constant spectrum with one bin ``k`` (``k * hop / n_fft`` integer, so frames are in phase) and
    phase phi gives ``2 * amplitude / n_fft * cos(2 pi k (n + offset) / n_fft + phi)``: the magnitude comes
    from the first half of the projection (clamped to 100), the phase from the second half, and ``offset``
    is the 'same'-padding trim. Causal frames are not windowed; non-causal ones pick up the window gain."""
    k, phi, num_frames = 16, 0.7, 8
    head = Vocos(**SMALL, causal=causal).head
    bias = torch.full((2 * (N_FFT // 2 + 1),), -40.0)
    bias[k] = log_magnitude
    bias[N_FFT // 2 + 1 :] = phi
    with torch.no_grad():
        head.proj.weight.zero_()
        head.proj.bias.copy_(bias)
        sig = head(torch.randn(2, num_frames, SMALL["dim"]))
    offset = 0 if causal else (N_FFT - HOP) // 2
    n = torch.arange(num_frames * HOP, dtype=torch.float64) + offset
    expected = 2 * amplitude / N_FFT * torch.cos(2 * math.pi * k * n / N_FFT + phi)
    if not causal:
        expected = expected * window_gain(num_frames)
    torch.testing.assert_close(sig, expected.float().expand(2, -1), rtol=0, atol=1e-5)


def test_istft_rejects_uncovered_hops() -> None:
    with pytest.raises(ValueError, match="hop_length"):
        ISTFT(N_FFT, N_FFT - 1)
    with pytest.raises(ValueError, match="hop_length"):
        ISTFT(N_FFT, N_FFT + 1, causal=True)
    assert ISTFT(N_FFT, N_FFT, causal=True)(torch.zeros(1, N_FFT // 2 + 1, 3, dtype=torch.cfloat)).shape == (
        1,
        3 * N_FFT,
    )
