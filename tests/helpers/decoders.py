"""The checks every decoder passes (Vocos, WaveNeXt: (B, T, D) features -> (B, T * hop) samples and, when
causal, the left contexts that continue a stream): parity with a reference vector, causality, gradients,
output length and state, streaming, state errors and batch isolation. Each test module states its own
expectations (hop, context shapes) and adds what only its decoder does."""

import pytest
import torch

from helpers.reference import assert_close, load_reference


def reference_decoder(cls: type, name: str) -> tuple[torch.nn.Module, dict]:
    """The decoder of the parity vector ``<name>.pt`` (strictly loaded, eval mode) and the file."""
    ref = load_reference(name)
    model = cls(**ref["config"])
    model.load_state_dict(ref["state_dict"], strict=True)
    return model.eval(), ref


def assert_reference_outputs(model: torch.nn.Module, ref: dict, hop: int) -> list:
    """The vector's offline outputs, (2, 49) and (1, 7) frames in; the left contexts of the first input."""
    with torch.no_grad():
        sig, left_contexts = model(ref["inputs"]["x"])
        sig_short = model(ref["inputs"]["x_short"])[0]
    assert sig.shape == (2, 49 * hop) and sig_short.shape == (1, 7 * hop)
    assert_close(sig, ref["outputs"]["sig"])
    assert_close(sig_short, ref["outputs"]["sig_short"])
    return left_contexts


def assert_decoder_causality(model: torch.nn.Module, hop: int, causal: bool) -> None:
    """A decoder's (B, T, D) -> (B, T * hop) samples up to frame t: with ``causal`` they ignore the features
    after t; without, they do not (sanity). The samples after t change either way."""
    x = torch.randn(1, 20, model.input_dim)
    t = 11
    x_changed = x.clone()
    x_changed[:, t + 1 :] = torch.randn(1, 20 - t - 1, model.input_dim)
    with torch.no_grad():
        sig, sig_changed = model(x)[0], model(x_changed)[0]
    past = slice(0, (t + 1) * hop)
    assert not torch.allclose(sig[:, (t + 1) * hop :], sig_changed[:, (t + 1) * hop :])
    if causal:
        torch.testing.assert_close(sig[:, past], sig_changed[:, past], rtol=0, atol=1e-7)
    else:
        assert not torch.allclose(sig[:, past], sig_changed[:, past])


def assert_gradients_reach_every_parameter(model: torch.nn.Module) -> torch.Tensor:
    """In training mode, a random loss on the (2, 9 * hop) output of (2, 9) frames gives every parameter and
    the input a gradient. Returns the output."""
    model.train()
    x = torch.randn(2, 9, model.input_dim, requires_grad=True)
    sig, _ = model(x)
    (sig * torch.randn_like(sig)).sum().backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    assert x.grad.abs().sum() > 0
    return sig


def assert_output_length(
    model: torch.nn.Module, num_frames: int, hop: int, num_layers: int, context_shapes: list[tuple]
) -> torch.Tensor:
    """(3, num_frames) frames give (3, num_frames * hop) finite samples and one left context per convolution
    (the embedding's and each layer's): of ``context_shapes`` when causal, ``None`` otherwise. Returns the
    samples."""
    with torch.no_grad():
        sig, left_contexts = model(torch.randn(3, num_frames, model.input_dim))
    assert sig.shape == (3, num_frames * hop) and torch.isfinite(sig).all()
    assert len(left_contexts) == 1 + num_layers
    if model.causal:
        assert [tuple(c.shape) for c in left_contexts] == context_shapes
    else:
        assert left_contexts == [None] * (1 + num_layers)
    return sig


def stream(model: torch.nn.Module, x: torch.Tensor, chunks: list[int]) -> tuple[list[torch.Tensor], list]:
    """Run ``x (B, T, C)`` chunk by chunk (``sum(chunks) == T``) with the state threaded through."""
    pieces, left_contexts, start = [], None, 0
    for size in chunks:
        piece, left_contexts = model(x[:, start : start + size], left_contexts)
        pieces.append(piece)
        start += size
    assert start == x.shape[1]
    return pieces, left_contexts


def assert_streaming_state_errors(causal: torch.nn.Module, non_causal: torch.nn.Module) -> list:
    """A causal decoder's state is refused by a non-causal one and must hold every left context; the
    non-causal "state" (``None`` per convolution) can be passed back in. Returns the causal state."""
    x = torch.randn(1, 4, causal.input_dim)
    _, left_contexts = causal(x)
    with pytest.raises(ValueError, match="causal"):
        non_causal(x, left_contexts)
    with pytest.raises(ValueError, match="left contexts"):
        causal(x, left_contexts[:2])
    non_causal(x, [None] * len(left_contexts))
    return left_contexts


def assert_batch_items_do_not_leak(model: torch.nn.Module) -> None:
    """Each item of a batch decodes as it does alone, whatever the other items hold."""
    x = torch.randn(3, 10, model.input_dim)
    x_other = x.clone()
    x_other[1:] = 100 * torch.randn(2, 10, model.input_dim)
    with torch.no_grad():
        sig = model(x)[0]
        assert_close(model(x_other)[0][0], sig[0])
        assert_close(model(x[1:2])[0][0], sig[1])
