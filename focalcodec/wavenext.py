"""WaveNeXt decoder: features -> waveform with a ConvNeXt backbone and a linear head (FocalCodec-Stream).

Data flow for ``feats (B, T, input_dim)``::

    VocosBackbone  conv embedding -> LN -> num_layers x ConvNeXtBlock -> LN    (B, T, dim)
    WaveNeXtHead   Linear(dim, hop_length) -> flatten frames -> clamp [-1, 1]  (B, T * hop_length)

There is no STFT, window or overlap-add: frame ``t`` fills samples ``[t * hop_length, (t + 1) * hop_length)``.
Non-causal mode pads every convolution like PyTorch's ``padding='same'``. Causal mode prepends ``k - 1``
frames to every convolution's input: **zeros** for a fresh stream (unlike Vocos, which repeats the first
frame), the cached left context otherwise, so output frame ``t`` only depends on input frames ``<= t``. A
causal model can be run chunk by chunk of any length: pass the returned ``left_contexts`` back in.
"""

import torch
from torch import nn

from focalcodec.config import remembers_config
from focalcodec.vocos import LeftContexts, VocosBackbone, check_left_contexts

__all__ = ["WaveNeXt", "WaveNeXtHead"]


class WaveNeXtHead(nn.Module):
    """Project every frame to ``hop_length`` samples, concatenate the frames and hard-clip to [-1, 1].

    Arguments
    ---------
    dim : input size.
    hop_length : samples per frame.
    """

    def __init__(self, dim: int, hop_length: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, hop_length)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, dim) -> (B, T * hop_length)."""
        return self.proj(x).flatten(start_dim=1).clamp(-1.0, 1.0)


@remembers_config
class WaveNeXt(nn.Module):
    """WaveNeXt vocoder: ``(B, T, input_dim)`` features at the frame rate -> ``(B, T * hop_length)`` waveform.

    Arguments
    ---------
    input_dim : input feature size.
    num_layers : number of ConvNeXt blocks.
    dim : backbone width.
    ffn_dim : ConvNeXt MLP hidden size.
    kernel_size : kernel of every backbone convolution.
    layerscale_init : initial ConvNeXt layer scale; ``None`` means ``1 / num_layers``.
    hop_length : samples per input frame (``upsample_factor``).
    causal : causal (zero left-padded) convolutions, streamable with any number of frames per call.

    Example
    -------
    >>> model = WaveNeXt(input_dim=64, num_layers=2, dim=32, ffn_dim=64)
    >>> sig, _ = model(torch.randn(2, 10, 64))
    >>> sig.shape
    torch.Size([2, 4800])
    """

    def __init__(
        self,
        input_dim: int = 1024,
        num_layers: int = 8,
        dim: int = 1024,
        ffn_dim: int = 2048,
        kernel_size: int = 7,
        layerscale_init: float | None = None,
        hop_length: int = 480,
        causal: bool = False,
    ) -> None:
        super().__init__()
        if layerscale_init is None:
            layerscale_init = 1 / num_layers
        self.input_dim = input_dim
        self.num_layers = num_layers
        self.dim = dim
        self.kernel_size = kernel_size
        self.causal = causal
        self.upsample_factor = hop_length
        self.chunk_size = 1
        self.backbone = VocosBackbone(
            input_dim, num_layers, dim, ffn_dim, kernel_size, layerscale_init, causal
        )
        self.head = WaveNeXtHead(dim, hop_length)

    def forward(
        self, input: torch.Tensor, left_contexts: LeftContexts | None = None
    ) -> tuple[torch.Tensor, LeftContexts]:
        """Synthesise a waveform.

        Arguments
        ---------
        input : (B, T, input_dim), any ``T >= 1``.
        left_contexts : streaming state returned by the previous call on the preceding chunk (causal mode
            only); ``None`` (or ``None`` entries) for a full sequence or the first chunk.

        Returns
        -------
        sig : (B, T * hop_length), in [-1, 1].
        left_contexts : ``1 + num_layers`` tensors to pass with the next chunk (causal): the last
            ``kernel_size - 1`` frames of each convolution's input, channels-first like :class:`Vocos`,
            i.e. ``(B, input_dim, kernel_size - 1)`` for the embedding, then ``(B, dim, kernel_size - 1)``
            per block. Non-causal: as many ``None``.
        """
        left_contexts = check_left_contexts(left_contexts, 1 + self.num_layers)
        if self.causal:  # a fresh stream starts from zeros (PaddedConv1d would repeat the first frame)
            width = self.kernel_size - 1
            contexts: LeftContexts = []
            for i, context in enumerate(left_contexts):
                channels = self.input_dim if i == 0 else self.dim
                contexts.append(
                    input.new_zeros(input.shape[0], channels, width) if context is None else context
                )
            left_contexts = contexts
        x, left_contexts = self.backbone(input, left_contexts)
        return self.head(x), left_contexts
