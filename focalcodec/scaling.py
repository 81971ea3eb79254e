"""The frame-rate changes of FocalCodec's compressor and decompressor: a strided convolution (``DownScale``)
and a transposed one (``UpScale``), kernel = stride = factor, with Snake. In causal mode (FocalCodec-Stream)
each carries its input's last ``factor - 1`` frames between streaming steps (its last frame as a
placeholder for factor 1, as upstream)."""

import torch
import torch.nn.functional as F
from torch import nn

from focalcodec.layers import Snake1d, prepend_context

__all__ = ["DownScale", "UpScale"]


def _last_frames(x: torch.Tensor, factor: int) -> torch.Tensor:
    """The streaming context of a kernel = stride = ``factor`` convolution's input (B, C, T'): its last
    ``factor - 1`` frames, or its last frame as a placeholder for factor 1."""
    return x[..., x.shape[-1] - max(factor - 1, 1) :]


class DownScale(nn.Module):
    """Strided convolution (kernel = stride = factor) followed by Snake.

    Non-causal: the input is zero-padded on the right by ``(T - factor) mod factor`` frames, so output frame
    ``j`` sees input frames ``[j * factor, (j + 1) * factor)``. Causal: ``factor - 1`` frames of left context
    (copies of the first frame on a fresh stream) are prepended instead, so output frame ``j`` sees input
    frames ``(j * factor - factor, j * factor]``. Either way, for factor 2 the output has ``ceil(T / 2)``
    frames. Streaming calls must carry a multiple of ``factor`` frames.

    Arguments
    ---------
    input_dim : input channels.
    output_dim : output channels.
    factor : kernel size and stride.
    causal : left context instead of right padding.
    """

    def __init__(self, input_dim: int, output_dim: int, factor: int = 1, causal: bool = False) -> None:
        super().__init__()
        self.factor = factor
        self.causal = causal
        self.downscale = nn.Conv1d(input_dim, output_dim, factor, stride=factor)
        self.activation = Snake1d(output_dim)

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, T, C_in) -> (B, T', C_out), plus the causal context ``(B, C_in, max(factor - 1, 1))``."""
        x = x.transpose(1, 2)
        if self.causal:
            length = x.shape[-1] + self.factor - 1
            x = prepend_context(x, context, self.factor - 1)
            x = x[..., x.shape[-1] - length :]  # drops the factor-1 placeholder
            context = _last_frames(x, self.factor)
        else:
            context = None
            pad = (x.shape[-1] - self.factor) % self.factor
            if pad > 0:
                x = F.pad(x, (0, pad))
        y = self.activation(self.downscale(x).transpose(1, 2))
        # Causal (streaming) models: channels-last in memory, the linear layers after it are several times
        # slower on a transposed input. The non-causal path keeps upstream's layout, whose GEMMs the original
        # mode reproduces bit for bit (tests/scripts/test_original_mode.py)
        return (y.contiguous() if self.causal else y), context


class UpScale(nn.Module):
    """Snake followed by a transposed convolution (kernel = stride = factor): ``T`` -> ``T * factor`` frames.

    Output frame ``t`` only depends on input frame ``t // factor``, so the output needs no state. In causal
    mode the last ``max(factor - 1, 1)`` input frames are still returned as a context, as upstream.

    Arguments
    ---------
    input_dim : input channels.
    output_dim : output channels.
    factor : kernel size and stride.
    causal : return the streaming context.
    """

    def __init__(self, input_dim: int, output_dim: int, factor: int = 1, causal: bool = False) -> None:
        super().__init__()
        self.factor = factor
        self.causal = causal
        self.activation = Snake1d(input_dim)
        self.upscale = nn.ConvTranspose1d(input_dim, output_dim, factor, stride=factor)

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, T, C_in) -> (B, T * factor, C_out), plus the causal context (B, C_in, max(factor - 1, 1))."""
        if self.causal:
            context = _last_frames(prepend_context(x.transpose(1, 2), context, self.factor - 1), self.factor)
        else:
            context = None
        y = self.upscale(self.activation(x).transpose(1, 2)).transpose(1, 2)
        return (y.contiguous() if self.causal else y), context  # memory layout: as DownScale
