"""Small building blocks shared by the FocalCodec modules (padding rules, causal convolutions, Snake,
DynamicTanh, a convolution as a matrix product). Everything here is TorchScript-compatible."""

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "DynamicTanh",
    "Snake1d",
    "causal_conv1d",
    "pad_causal",
    "pad_same",
    "prepend_context",
    "windowed_conv1d",
]


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


def prepend_context(x: torch.Tensor, context: torch.Tensor | None, amount: int) -> torch.Tensor:
    """The input of a causal convolution: ``x`` after its left context.

    Arguments
    ---------
    x : (B, C, T)
    context : (B, C, L) frames preceding ``x`` (streaming state), or ``None`` at the start of a stream.
    amount : frames of replicate padding (copies of the first frame) when ``context`` is ``None``.

    Returns
    -------
    (B, C, L + T), or (B, C, amount + T) at the start of a stream.
    """
    return pad_causal(x, amount) if context is None else torch.cat([context, x], dim=-1)


def causal_conv1d(
    x: torch.Tensor,
    context: torch.Tensor | None,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: int = 1,
    groups: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Causal (strided) convolution with no padding of its own, resumable chunk by chunk.

    A fresh stream (``context is None``) is left-padded with ``k - 1`` copies of its first frame. The returned
    context holds the input frames the next output starts from (``k - 1`` of them when the input length is
    a multiple of the stride), so consecutive pieces give exactly the frames of one call on the whole input.

    Arguments
    ---------
    x : (B, C_in, T)
    context : (B, C_in, L) returned by the previous call, or ``None``.
    weight, bias : convolution parameters, ``weight`` (C_out, C_in / groups, k).
    stride, groups : as for ``F.conv1d``.

    Returns
    -------
    (B, C_out, T_out) and the context for the next call (B, C_in, L').
    """
    kernel_size = weight.shape[-1]
    x = prepend_context(x, context, kernel_size - 1)
    if x.shape[-1] < kernel_size:  # piece too short for one more output frame
        return x.new_zeros(x.shape[0], weight.shape[0], 0), x
    y = F.conv1d(x, weight, bias, stride=stride, groups=groups)
    return y, x[..., y.shape[-1] * stride :]


class Snake1d(nn.Module):
    """Snake activation ``y = x + sin(alpha * x)^2 / (alpha + 1e-9)`` with one learnable alpha per channel.

    Computed in upstream's order of operations (``(alpha + 1e-9).reciprocal()`` times the gate): a division
    can differ from it by one ulp, which training amplifies, so only this order reproduces the original
    recipe bit for bit.

    Arguments
    ---------
    dim : number of channels ``C``; ``alpha`` has shape ``(C, 1)``.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(dim, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, C) -> (B, T, C)."""
        alpha = self.alpha.T
        gate = (alpha * x).sin() ** 2
        return x + (alpha + 1e-9).reciprocal() * gate


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


def windowed_conv1d(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, groups: int
) -> torch.Tensor:
    """``F.conv1d(x, weight, bias, groups=groups)`` (stride 1, no padding) as one batched matrix product of
    the gathered input windows and the weights, group by group.

    On the CPU this is several times faster than the convolution for a long grouped kernel and a few output
    frames (the positional convolution's streaming step: kernel 128, 16 groups, 4 frames), and slower for
    long inputs, whose windows it would also hold in memory (``T * kernel`` values per channel).

    Arguments
    ---------
    x : (B, C_in, L)
    weight : (C_out, C_in / groups, k)
    bias : (C_out,) or ``None``.
    groups : as for ``F.conv1d``.

    Returns
    -------
    (B, C_out, L - k + 1)
    """
    batch, _, length = x.shape
    channels_out, group_in, kernel = weight.shape
    frames = length - kernel + 1
    index = torch.arange(frames, device=x.device)[:, None] + torch.arange(kernel, device=x.device)
    windows = x[:, :, index].view(batch, groups, group_in, frames, kernel).transpose(2, 3)
    windows = windows.reshape(batch, groups, frames, group_in * kernel)
    weights = weight.view(groups, channels_out // groups, group_in * kernel).transpose(1, 2)
    out = torch.matmul(windows, weights)  # (B, groups, T, C_out / groups)
    out = out.transpose(2, 3).reshape(batch, channels_out, frames)
    return out if bias is None else out + bias[:, None]
