"""Small building blocks shared by the FocalCodec modules (padding rules, Snake, DynamicTanh)."""

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DynamicTanh", "Snake1d", "pad_causal", "pad_same"]


def pad_same(x: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Zero-pad the last axis as PyTorch's ``padding='same'`` does (stride 1).

    Left gets ``(k - 1) // 2`` frames, right the rest, so even kernels pad one more frame on the right.

    Arguments
    ---------
    x : (..., T)
    kernel_size : convolution kernel size ``k``.

    Returns
    -------
    (..., T + k - 1)
    """
    total = kernel_size - 1
    left = total // 2
    return F.pad(x, (left, total - left))


def pad_causal(x: torch.Tensor, amount: int) -> torch.Tensor:
    """Left-pad the last axis by repeating its first frame ``amount`` times (causal "replicate" padding).

    Arguments
    ---------
    x : (B, C, T)
    amount : number of frames to prepend (``k - 1`` for a causal convolution).

    Returns
    -------
    (B, C, T + amount)
    """
    if amount <= 0:
        return x
    return F.pad(x, (amount, 0), mode="replicate")


class Snake1d(nn.Module):
    """Snake activation ``y = x + sin(alpha * x)^2 / (alpha + 1e-9)`` with one learnable alpha per channel.

    Arguments
    ---------
    dim : number of channels ``C``; ``alpha`` has shape ``(C, 1)``.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(dim, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, C) -> (B, T, C)."""
        alpha = self.alpha[:, 0]
        return x + torch.sin(alpha * x).pow(2) / (alpha + 1e-9)


class DynamicTanh(nn.Module):
    """Normalisation-free replacement for LayerNorm: ``y = tanh(alpha * x)`` with one scalar ``alpha``.

    Arguments
    ---------
    init : initial value of ``alpha`` (shape ``(1,)``).
    """

    def __init__(self, init: float = 0.5) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.full((1,), float(init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., C) -> (..., C)."""
        return torch.tanh(self.alpha * x)
