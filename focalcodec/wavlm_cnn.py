"""WavLM's CNN feature extractor: the waveform to frames (320x downsampling by default), block by block; in
causal mode (FocalCodec-Stream) left-padded, carrying each block's left context between streaming steps."""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from focalcodec.layers import causal_conv1d

__all__ = ["FeatureExtractor", "FeatureExtractorBlock"]


class FeatureExtractorBlock(nn.Module):
    """Conv1d (no bias) → dropout → LayerNorm → GELU, one block of the CNN feature extractor.

    Arguments
    ---------
    in_channels, out_channels, kernel_size, stride : convolution shape.
    dropout : dropout probability after the convolution.
    causal : left replicate padding (or carried context) instead of no padding.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int, dropout: float, causal: bool
    ) -> None:
        super().__init__()
        self.causal = causal
        self.kernel_size = kernel_size
        self.stride = stride
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(out_channels)

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, L, C_in) -> (B, L', C_out), plus the causal left context (``None`` when non-causal).

        Non-causal: ``L' = floor((L - k) / s) + 1``, the input being zero-padded on the right to ``k``
        frames if shorter. Causal: ``L' = ceil(L / s)`` on the first call (see ``causal_conv1d``).
        """
        x = x.transpose(1, 2)
        if self.causal:
            x, context = causal_conv1d(x, context, self.conv.weight, None, self.stride)
        else:
            x = self.conv(F.pad(x, (0, max(0, self.kernel_size - x.shape[-1]))))
        x = self.dropout(x).transpose(1, 2)
        return F.gelu(self.norm(x)), context


class FeatureExtractor(nn.Module):
    """Stack of :class:`FeatureExtractorBlock`, waveform to frames (320x downsampling by default).

    Arguments
    ---------
    hidden_dims, kernel_sizes, strides : one entry per block.
    dropout : dropout probability after each convolution.
    causal : causal convolutions.
    """

    def __init__(
        self,
        hidden_dims: Sequence[int],
        kernel_sizes: Sequence[int],
        strides: Sequence[int],
        dropout: float,
        causal: bool,
    ) -> None:
        super().__init__()
        if not len(hidden_dims) == len(kernel_sizes) == len(strides):
            raise ValueError("hidden_dims, kernel_sizes and strides must have the same length")
        in_dims = (1, *hidden_dims[:-1])
        self.layers = nn.ModuleList(
            FeatureExtractorBlock(c_in, c_out, k, s, dropout, causal)
            for c_in, c_out, k, s in zip(in_dims, hidden_dims, kernel_sizes, strides, strict=True)
        )

    def forward(
        self, input: torch.Tensor, contexts: list[torch.Tensor | None]
    ) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
        """(B, N) waveform -> (B, T, hidden_dims[-1]), plus one left context per block."""
        x = input[..., None]
        new_contexts: list[torch.Tensor | None] = []
        for i, layer in enumerate(self.layers):
            x, context = layer(x, contexts[i])
            new_contexts.append(context)
        return x, new_contexts
