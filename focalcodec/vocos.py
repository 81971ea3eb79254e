"""Vocos decoder: features -> waveform with a ConvNeXt backbone and an inverse-STFT head.

Data flow for ``feats (B, T, input_dim)``::

    VocosBackbone  conv embedding -> LN -> num_layers x ConvNeXtBlock -> LN    (B, T, dim)
    ISTFTHead      Linear -> log-magnitude + phase -> complex spectrum -> ISTFT  (B, T * hop_length)

Non-causal mode pads every convolution like PyTorch's ``padding='same'`` and overlap-adds Hann-windowed
frames. Causal mode (FocalCodec-Stream) left-pads every convolution by repeating the first frame and keeps
the last ``hop_length`` samples of each inverse FFT, so output frame ``t`` only depends on input frames
``<= t``. A causal model can also be run chunk by chunk: pass the returned ``left_contexts`` back in.
"""

import math
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from focalcodec.config import remembers_config
from focalcodec.layers import causal_conv1d, pad_same

__all__ = [
    "ISTFT",
    "ConvNeXtBlock",
    "ISTFTHead",
    "PaddedConv1d",
    "Vocos",
    "VocosBackbone",
    "check_left_contexts",
    "irfft_matrix",
]

LeftContexts = list[torch.Tensor | None]
"""Streaming state: one cached left context ``(B, C_in, kernel_size - 1)`` per convolution (``None`` for
the first chunk and in non-causal mode)."""


def check_left_contexts(left_contexts: LeftContexts | None, num_contexts: int) -> LeftContexts:
    """``num_contexts`` entries (``None`` for a full sequence or the first chunk), else a ``ValueError``."""
    if left_contexts is None:
        fresh: LeftContexts = []
        for _ in range(num_contexts):
            fresh.append(None)
        return fresh
    if len(left_contexts) != num_contexts:
        raise ValueError(f"expected {num_contexts} left contexts, got {len(left_contexts)}")
    return left_contexts


class PaddedConv1d(nn.Conv1d):
    """Stride-1 ``Conv1d`` that pads its own input (same parameters and state_dict keys as ``nn.Conv1d``).

    Non-causal: zero 'same' padding, output frame t sees inputs ``t - (k-1)//2 ... t + k//2``. Causal: the
    ``k - 1`` frames before the input are the cached ``left_context`` if given, otherwise copies of the
    first frame (replicate padding).

    Arguments
    ---------
    in_channels, out_channels, kernel_size, groups : as for ``nn.Conv1d``.
    causal : causal (left) padding instead of 'same' padding.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, groups: int = 1, causal: bool = False
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, groups=groups)
        self.causal = causal

    def forward(
        self, x: torch.Tensor, left_context: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Convolve.

        Arguments
        ---------
        x : (B, C_in, T)
        left_context : (B, C_in, k - 1) frames preceding ``x`` (causal streaming only).

        Returns
        -------
        y : (B, C_out, T)
        left_context : (B, C_in, k - 1) context for the next chunk (causal), else ``None``.
        """
        if not self.causal:
            if left_context is not None:
                raise ValueError("a left context (streaming state) needs causal=True")
            return F.conv1d(
                pad_same(x, self.weight.shape[-1]), self.weight, self.bias, groups=self.groups
            ), None
        return causal_conv1d(x, left_context, self.weight, self.bias, 1, self.groups)


class ConvNeXtBlock(nn.Module):
    """Residual ConvNeXt block: depthwise conv -> LN -> Linear -> GELU -> Linear -> layer scale.

    Arguments
    ---------
    dim : channels ``C``.
    ffn_dim : hidden size of the pointwise MLP.
    kernel_size : depthwise convolution kernel.
    layerscale_init : initial value of ``gamma`` (shape ``(C,)``).
    causal : causal padding in the depthwise convolution.
    """

    def __init__(
        self, dim: int, ffn_dim: int, kernel_size: int, layerscale_init: float, causal: bool = False
    ) -> None:
        super().__init__()
        self.dwconv = PaddedConv1d(dim, dim, kernel_size, groups=dim, causal=causal)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, ffn_dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(ffn_dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), float(layerscale_init)))

    def forward(
        self, x: torch.Tensor, left_context: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, T, C) -> (B, T, C), plus the depthwise conv's left context (see :class:`PaddedConv1d`)."""
        h, left_context = self.dwconv(x.transpose(1, 2), left_context)
        h = self.pwconv2(self.act(self.pwconv1(self.norm(h.transpose(1, 2)))))
        return x + self.gamma * h, left_context


class VocosBackbone(nn.Module):
    """Conv embedding, input LayerNorm, a stack of ConvNeXt blocks and an output LayerNorm.

    Arguments
    ---------
    input_dim : input feature size.
    num_layers : number of ConvNeXt blocks.
    dim : model width ``C``.
    ffn_dim : ConvNeXt MLP hidden size.
    kernel_size : kernel of the embedding and depthwise convolutions.
    layerscale_init : initial layer scale of every block.
    causal : causal padding in every convolution.
    """

    def __init__(
        self,
        input_dim: int,
        num_layers: int,
        dim: int,
        ffn_dim: int,
        kernel_size: int,
        layerscale_init: float,
        causal: bool = False,
    ) -> None:
        super().__init__()
        self.embedding = PaddedConv1d(input_dim, dim, kernel_size, causal=causal)
        self.input_norm = nn.LayerNorm(dim, eps=1e-6)
        self.layers = nn.ModuleList(
            ConvNeXtBlock(dim, ffn_dim, kernel_size, layerscale_init, causal) for _ in range(num_layers)
        )
        # PyTorch's default initialisation, as upstream's Vocos (the original Vocos paper's truncated
        # normal is not used there).
        self.output_norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: torch.Tensor, left_contexts: LeftContexts) -> tuple[torch.Tensor, LeftContexts]:
        """Run the backbone.

        Arguments
        ---------
        x : (B, T, input_dim)
        left_contexts : ``1 + num_layers`` conv left contexts (embedding first), entries may be ``None``.

        Returns
        -------
        y : (B, T, dim)
        left_contexts : the updated contexts, same layout.
        """
        x, context = self.embedding(x.transpose(1, 2), left_contexts[0])
        new_contexts: LeftContexts = [context]
        x = self.input_norm(x.transpose(1, 2))
        for i, layer in enumerate(self.layers):
            x, context = layer(x, left_contexts[i + 1])
            new_contexts.append(context)
        return self.output_norm(x), new_contexts


def irfft_matrix(n_fft: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The real matrix of the inverse real FFT: ``irfft_matrix(N) @ cat([X.real, X.imag])`` equals
    ``torch.fft.irfft(X, n=N, dim=-2)`` for a (..., N // 2 + 1, T) spectrum ``X`` (as ``irfft``, the imaginary
    parts of bin 0 and, for even N, bin N / 2 are ignored).

    Returns
    -------
    (N, 2 * (N // 2 + 1)) matrix: ``w_k cos(2 pi k n / N) / N`` then ``-w_k sin(2 pi k n / N) / N``, with
    ``w_k = 2`` except 1 for bins 0 and N / 2; computed in float64, then cast to ``dtype``.
    """
    bins = n_fft // 2 + 1
    k = torch.arange(bins, device=device)
    angle = (torch.arange(n_fft, device=device)[:, None] * k % n_fft).double() * (2 * math.pi / n_fft)
    edge = (k == 0) | (2 * k == n_fft)  # bins without a mirrored twin
    weight = torch.where(edge, 1.0, 2.0).double() / n_fft
    cos = weight * angle.cos()
    sin = torch.where(edge, 0.0, -weight * angle.sin())
    return torch.cat([cos, sin], dim=1).to(dtype)


class ISTFT(nn.Module):
    """Inverse STFT of ``n_fft``-point frames spaced ``hop_length`` samples apart, one frame per output hop.

    Non-causal ("same" padding): inverse real FFT of every frame, periodic Hann window, overlap-add,
    drop ``(n_fft - hop_length) // 2`` samples at the start and keep ``T * hop_length``, then divide by
    the overlap-added squared window (the window envelope).

    Causal: inverse real FFT of every frame and keep its last ``hop_length`` samples (no window, no
    overlap), so output hop ``t`` depends on frame ``t`` only.

    ``use_matmul = True`` (set for ONNX export, which has no inverse FFT or ``fold``) computes the same with a
    real matrix product (:func:`irfft_matrix`) and an overlap-add of pads and sums: equal up to float
    rounding (about 1e-6 of the signal's scale), and it takes the spectrum as real and imaginary parts
    (:meth:`synthesise`).

    Arguments
    ---------
    n_fft : FFT size (``n_fft // 2 + 1`` frequency bins).
    hop_length : samples per frame; at most ``n_fft - 2`` in non-causal mode, at most ``n_fft`` in causal
        mode.
    causal : causal variant.
    """

    def __init__(self, n_fft: int, hop_length: int, causal: bool = False) -> None:
        super().__init__()
        # With a smaller overlap the periodic Hann window's zero at sample 0 leaves output samples that no
        # frame covers, and the envelope division is undefined there.
        max_hop = n_fft if causal else n_fft - 2
        if not 0 < hop_length <= max_hop:
            raise ValueError(f"hop_length must be in [1, {max_hop}] for n_fft={n_fft}, got {hop_length}")
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.causal = causal
        self.pad = (n_fft - hop_length) // 2
        self.use_matmul = False
        window = torch.hann_window(n_fft)
        self.register_buffer("window", window, persistent=False)
        self.register_buffer("window_sq", window.square(), persistent=False)

    def _overlap_add(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, n_fft, T) frames -> (B, T * hop_length) overlap-added and trimmed signal."""
        T = frames.shape[-1]
        length = (T - 1) * self.hop_length + self.n_fft
        sig = F.fold(
            frames, output_size=(1, length), kernel_size=(1, self.n_fft), stride=(1, self.hop_length)
        )
        return sig[:, 0, 0, self.pad : self.pad + T * self.hop_length]

    def _overlap_add_padded(self, frames: torch.Tensor) -> torch.Tensor:
        """:meth:`_overlap_add` without ``fold``: each frame is cut into ``ceil(n_fft / hop_length)`` hops,
        which are shifted by pads and summed (ONNX export; same sums, possibly in another order)."""
        B, T = frames.shape[0], frames.shape[-1]
        parts = (self.n_fft + self.hop_length - 1) // self.hop_length
        frames = F.pad(frames, (0, 0, 0, parts * self.hop_length - self.n_fft))
        frames = frames.reshape(B, parts, self.hop_length, T)
        sig = F.pad(frames[:, 0], (0, parts - 1))
        for part in range(1, parts):
            sig = sig + F.pad(frames[:, part], (part, parts - 1 - part))  # (B, hop, T + parts - 1)
        sig = sig.transpose(1, 2).reshape(B, (T + parts - 1) * self.hop_length)
        return sig[:, self.pad : self.pad + T * self.hop_length]

    def synthesise(self, real: torch.Tensor, imag: torch.Tensor) -> torch.Tensor:
        """The ``use_matmul`` path: (B, n_fft // 2 + 1, T) real and imaginary parts -> (B, T * hop_length)."""
        basis = irfft_matrix(self.n_fft, real.dtype, real.device)  # (n_fft, 2 * bins)
        spec = torch.cat([real, imag], dim=1)
        if self.causal:
            frames = torch.matmul(basis[self.n_fft - self.hop_length :], spec)  # (B, hop, T)
            return frames.transpose(1, 2).flatten(start_dim=1)
        frames = torch.matmul(basis * self.window[:, None], spec)  # windowed frames (B, n_fft, T)
        T = frames.shape[-1]
        envelope = self._overlap_add_padded(self.window_sq[None, :, None].expand(1, self.n_fft, T))
        return self._overlap_add_padded(frames) / envelope

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        """(B, n_fft // 2 + 1, T) complex spectrum -> (B, T * hop_length) waveform."""
        if self.use_matmul:
            return self.synthesise(spec.real, spec.imag)
        frames = torch.fft.irfft(spec, n=self.n_fft, dim=1, norm="backward")  # (B, n_fft, T)
        if self.causal:
            return frames[:, self.n_fft - self.hop_length :].transpose(1, 2).flatten(start_dim=1)
        T = frames.shape[-1]
        envelope = self._overlap_add(self.window_sq[None, :, None].expand(1, self.n_fft, T))
        return self._overlap_add(frames * self.window[:, None]) / envelope


class ISTFTHead(nn.Module):
    """Predict a log-magnitude and phase spectrum per frame and turn it into a waveform.

    Arguments
    ---------
    dim : input size.
    n_fft : FFT size of the :class:`ISTFT`.
    hop_length : samples per frame.
    causal : causal ISTFT.
    """

    def __init__(self, dim: int, n_fft: int, hop_length: int, causal: bool = False) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, 2 * (n_fft // 2 + 1))
        self.istft = ISTFT(n_fft, hop_length, causal)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, dim) -> (B, T * hop_length).

        The first half of the projection is the log-magnitude (magnitude clamped to at most 100 after the
        exp), the second half the phase in radians. The spectrum and the ISTFT are computed in float32, also
        under mixed-precision autocast (complex half/bfloat16 is not supported).
        """
        spectrum = self.proj(x).float().transpose(1, 2)
        logmag, phase = spectrum.chunk(2, dim=1)  # 2 x (B, n_fft // 2 + 1, T)
        mag = logmag.exp().clamp(max=100.0)
        real, imag = mag * torch.cos(phase), mag * torch.sin(phase)
        if self.istft.use_matmul:  # no complex tensors (ONNX export)
            return self.istft.synthesise(real, imag)
        return self.istft(torch.complex(real, imag))


@remembers_config
class Vocos(nn.Module):
    """Vocos vocoder: ``(B, T, input_dim)`` features at the frame rate -> ``(B, T * hop_length)`` waveform.

    Arguments
    ---------
    input_dim : input feature size.
    num_layers : number of ConvNeXt blocks.
    dim : backbone width.
    ffn_dim : ConvNeXt MLP hidden size.
    kernel_size : kernel of every backbone convolution.
    layerscale_init : initial ConvNeXt layer scale; ``None`` means ``1 / num_layers``.
    n_fft : ISTFT FFT size.
    hop_length : samples per input frame (``upsample_factor``).
    causal : causal convolutions and ISTFT (streamable, one frame at a time).
    **kwargs : deprecated aliases: ``input_channels`` overrides ``input_dim``; ``padding`` is ignored.

    Example
    -------
    >>> model = Vocos(input_dim=64, num_layers=2, dim=32, ffn_dim=64)
    >>> sig, _ = model(torch.randn(2, 10, 64))
    >>> sig.shape
    torch.Size([2, 3200])
    """

    def __init__(
        self,
        input_dim: int = 1024,
        num_layers: int = 8,
        dim: int = 512,
        ffn_dim: int = 1536,
        kernel_size: int = 7,
        layerscale_init: float | None = None,
        n_fft: int = 1024,
        hop_length: int = 320,
        causal: bool = False,
        **kwargs,
    ) -> None:
        super().__init__()
        if "input_channels" in kwargs:
            warnings.warn("Vocos: `input_channels` is deprecated, use `input_dim`", DeprecationWarning, 2)
            input_dim = kwargs.pop("input_channels")
        if "padding" in kwargs:
            warnings.warn("Vocos: `padding` is deprecated and ignored", DeprecationWarning, 2)
            kwargs.pop("padding")
        if kwargs:
            raise TypeError(f"Vocos got unexpected keyword arguments: {sorted(kwargs)}")
        if layerscale_init is None:
            layerscale_init = 1 / num_layers
        self.input_dim = input_dim
        self.num_layers = num_layers
        self.causal = causal
        self.upsample_factor = hop_length
        self.chunk_size = 1
        self.backbone = VocosBackbone(
            input_dim, num_layers, dim, ffn_dim, kernel_size, layerscale_init, causal
        )
        self.head = ISTFTHead(dim, n_fft, hop_length, causal)

    def forward(
        self, input: torch.Tensor, left_contexts: LeftContexts | None = None
    ) -> tuple[torch.Tensor, LeftContexts]:
        """Synthesise a waveform.

        Arguments
        ---------
        input : (B, T, input_dim) features.
        left_contexts : streaming state returned by the previous call on the preceding chunk (causal mode
            only); ``None`` for a full sequence or the first chunk.

        Returns
        -------
        sig : (B, T * hop_length)
        left_contexts : ``1 + num_layers`` tensors ``(B, C_in, kernel_size - 1)`` to pass with the next
            chunk (causal), or as many ``None`` (non-causal).
        """
        x, left_contexts = self.backbone(input, check_left_contexts(left_contexts, 1 + self.num_layers))
        return self.head(x), left_contexts
