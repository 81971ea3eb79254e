"""Distillation from a frozen WavLM teacher (FocalCodec-Stream stages 2 and 3): what a stage reads of the
teacher (the input of its positional embedding; the outputs of its transformer layers), the same views of a
student, and the layer-weighted loss.

The views are modules (``frozen_features`` in the YAML), so that the feature cache stores exactly what the
stage computes without it (``module(sig, length=lens)[0]``, utils/feature_cache/).
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from speechbrain.dataio.dataio import length_to_mask
from torch import nn

from focalcodec import wavlm
from focalcodec.config import remembers_config

__all__ = [
    "LayerOutputs",
    "LayerWeightedMSE",
    "PositionalEmbedding",
    "PositionalInput",
    "layer_outputs",
    "layer_weighted_mse",
    "positional_input",
]


@remembers_config
class PositionalEmbedding(wavlm.PositionalEmbedding):
    """WavLM's convolutional positional embedding (``x + GELU(conv(x))``, same keys), remembering its
    constructor config so that the run folder records it (the stage-2 student)."""


class _StopForwardError(Exception):
    """Raised by a hook to end a forward pass once what was needed is captured."""


def positional_input(
    encoder: wavlm.WavLM, sig: torch.Tensor, length: torch.Tensor | None = None
) -> torch.Tensor:
    """What ``encoder`` gives its positional embedding: (B, N) waveform -> (B, T, D) projected CNN features,
    frames past each item's length zeroed (non-causal masking). The transformer layers are not run."""
    captured = []

    def stop(module: nn.Module, args: tuple) -> None:
        captured.append(args[0])
        raise _StopForwardError

    handle = encoder.encoder.positional_embedding.register_forward_pre_hook(stop)
    try:
        encoder(sig, length=length)
    except _StopForwardError:
        pass
    finally:
        handle.remove()
    return captured[0]


def layer_outputs(
    encoder: wavlm.WavLM,
    sig: torch.Tensor,
    length: torch.Tensor | None = None,
    forward: Callable[..., Any] | None = None,
) -> torch.Tensor:
    """The outputs of every transformer layer of ``encoder``: (B, N) waveform -> (B, T, L, D), shallow to
    deep (the last is the encoder's output). Taken by forward hooks, with their graph: a student's gradient
    flows through them. ``forward`` is what runs the encoder, e.g. its DDP wrapper (default: itself)."""
    outputs: list[torch.Tensor] = []
    handles = [
        layer.register_forward_hook(lambda module, args, output: outputs.append(output[0]))
        for layer in encoder.encoder.layers
    ]
    try:
        (forward or encoder)(sig, length=length)
    finally:
        for handle in handles:
            handle.remove()
    return torch.stack(outputs, dim=2)


class _TeacherView(nn.Module):
    """A frozen teacher seen through one of the functions above, flattened to (B, T, C) features."""

    def __init__(self, encoder: wavlm.WavLM) -> None:
        super().__init__()
        self.encoder = encoder

    @property
    def sample_rate(self) -> int:
        return self.encoder.sample_rate

    @property
    def feature_extractor(self) -> nn.Module:
        """The teacher's CNN front end (the feature cache estimates frame counts from it)."""
        return self.encoder.feature_extractor


class PositionalInput(_TeacherView):
    """The stage-2 view of the teacher: ``(sig, length) -> ((B, T, D) its positional embedding's input,)``."""

    def forward(self, sig: torch.Tensor, length: torch.Tensor | None = None) -> tuple[torch.Tensor]:
        return (positional_input(self.encoder, sig, length),)


class LayerOutputs(_TeacherView):
    """The stage-3 view of the teacher: ``(sig, length) -> ((B, T, L * D) outputs of its L layers,)``,
    layer after layer along the last axis (``.unflatten(-1, (L, D))`` restores them)."""

    def forward(self, sig: torch.Tensor, length: torch.Tensor | None = None) -> tuple[torch.Tensor]:
        return (layer_outputs(self.encoder, sig, length).flatten(start_dim=2),)


class LayerWeightedMSE(NamedTuple):
    """The stage-3 loss and its parts."""

    loss: torch.Tensor  # () sum_l w_l * mse_l / L
    layer_mse: torch.Tensor  # (L,) masked mean squared error of each layer


def layer_weighted_mse(
    hyp: torch.Tensor, target: torch.Tensor, lens: torch.Tensor, weights: list[float]
) -> LayerWeightedMSE:
    """Layer-weighted feature distance of a student to its teacher, padding left out.

    ``loss = sum_l w_l * mse_l / L`` with ``mse_l`` the mean over valid frames and channels of layer l's
    squared error. Without padding this equals ``mean(w * mask * (hyp - target)^2)`` (docs/deviations.md
    #28).

    Arguments
    ---------
    hyp, target : (B, T, L, D) student and teacher layer outputs, frames paired by index.
    lens : (B,) relative lengths (SpeechBrain's mask: frame t of item b is valid when ``t < lens[b] * T``).
    weights : L layer weights, shallow to deep.
    """
    num_frames, num_layers = target.shape[1], target.shape[2]
    if len(weights) != num_layers:
        raise ValueError(
            f"distill_weights has {len(weights)} entries for {num_layers} layers: give one weight per layer"
        )
    mask = length_to_mask(lens * num_frames, max_len=num_frames).to(target.dtype)  # (B, T)
    squared = (hyp - target).pow(2).mean(dim=-1)  # (B, T, L)
    layer_mse = (squared * mask[..., None]).sum(dim=(0, 1)) / mask.sum()
    w = torch.as_tensor(weights, dtype=layer_mse.dtype, device=layer_mse.device)
    return LayerWeightedMSE((w * layer_mse).sum() / num_layers, layer_mse)
