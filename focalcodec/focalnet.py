"""FocalNet compressor (``FocalEncoder``) and decompressor (``FocalDecoder``) of FocalCodec.

Both stack focal-modulation blocks with a per-layer change of width and frame rate: the encoder maps
WavLM features to latents (optionally downsampling time), the decoder maps codes back to features
(optionally upsampling time). Sequences are channels-last ``(B, T, C)`` at every module boundary.

Causal mode (FocalCodec-Stream) swaps LayerNorm for DynamicTanh, the global context for a long
depthwise convolution, and 'same' padding for replicate left padding. Its streaming state
(``left_contexts``) is, per layer, a list of channels-first tensors: the last ``k - 1`` input frames of
every depthwise convolution (``(B, C, k - 1)``), after (encoder) or before (decoder) the context of the
layer's down/upscale convolution, ``(B, C_in, factor - 1)``, or its last input frame as a placeholder for
factor 1 (so every entry is a tensor, as upstream). Non-causal layers have state ``None``.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from focalcodec.config import remembers_config
from focalcodec.layers import DynamicTanh, pad_same, prepend_context
from focalcodec.scaling import DownScale, UpScale

__all__ = [
    "ChunkFeedForward",
    "DownScale",
    "FeedForward",
    "FocalBlock",
    "FocalDecoder",
    "FocalDownScale",
    "FocalEncoder",
    "FocalModulation",
    "FocalUpScale",
    "UpScale",
]

LeftContext = list[torch.Tensor] | None


def _norm(dim: int, causal: bool, tanhscale_init: float) -> nn.Module:
    """LayerNorm(dim) in non-causal mode, DynamicTanh in causal mode (no statistics over time or channels)."""
    return DynamicTanh(tanhscale_init) if causal else nn.LayerNorm(dim)


class FeedForward(nn.Module):
    """Position-wise MLP: Linear -> GELU -> dropout -> Linear -> dropout.

    Arguments
    ---------
    dim : input and output channels ``C``.
    ffn_dim : hidden channels.
    dropout : dropout probability.
    """

    def __init__(self, dim: int, ffn_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.in_proj = nn.Linear(dim, ffn_dim)
        self.out_proj = nn.Linear(ffn_dim, dim)
        self.activation = nn.GELU()
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., C) -> (..., C)."""
        return self.dropout(self.out_proj(self.dropout(self.activation(self.in_proj(x)))))


class FocalModulation(nn.Module):
    """Focal modulation: a query gated by a hierarchy of depthwise-convolution contexts.

    Levels ``l < focal_level`` use kernels ``focal_factor * l + focal_window``, each applied to the previous
    level's output. The last level is the global mean over time (non-causal) or one more depthwise
    convolution with kernel ``window_size`` (causal).

    Arguments
    ---------
    dim : channels ``C``.
    focal_window : kernel size of the first level.
    focal_level : number of convolutional levels ``L``.
    focal_factor : kernel size increment per level.
    dropout : dropout probability on the output.
    use_post_norm : apply a norm ``[norm]`` to the modulated query before ``out_proj``.
    normalize_modulator : divide the summed context by ``L + 1``.
    causal : replicate left padding, window convolution instead of the global mean, DynamicTanh norm.
    window_size : kernel size of the causal window level.
    tanhscale_init : initial DynamicTanh alpha (causal post-norm only).
    store_hidden : keep the last forward's ``gates`` (B, L + 1, T) and ``modulator`` (B, C, T) as attributes
        (upstream's hook for inspecting the model; NaN until then). Also settable later.
    """

    def __init__(
        self,
        dim: int,
        focal_window: int = 14,
        focal_level: int = 2,
        focal_factor: int = 4,
        dropout: float = 0.0,
        use_post_norm: bool = False,
        normalize_modulator: bool = False,
        causal: bool = False,
        window_size: int = 512,
        tanhscale_init: float = 0.5,
        store_hidden: bool = False,
    ) -> None:
        super().__init__()
        self.dim = dim
        self.focal_level = focal_level
        self.normalize_modulator = normalize_modulator
        self.causal = causal
        self.in_proj = nn.Linear(dim, 2 * dim + focal_level + 1)
        # Upstream registers the levels before the projections but draws their weights after them: the
        # same order here gives the same initial weights at the same seed and the same parameter order.
        self.layers = nn.ModuleList()
        self.context_proj = nn.Conv1d(dim, dim, 1)
        self.out_proj = nn.Linear(dim, dim)
        self.kernel_sizes = [focal_factor * level + focal_window for level in range(focal_level)]
        if causal:
            self.kernel_sizes.append(window_size)
        for kernel_size in self.kernel_sizes:
            self.layers.append(nn.Sequential(nn.Conv1d(dim, dim, kernel_size, groups=dim), nn.GELU()))
        self.norm = _norm(dim, causal, tanhscale_init) if use_post_norm else nn.Identity()
        self.dropout = nn.Dropout(dropout)
        self.store_hidden = store_hidden
        self.gates = torch.full((), math.nan)
        self.modulator = torch.full((), math.nan)

    def forward(self, x: torch.Tensor, left_context: LeftContext = None) -> tuple[torch.Tensor, LeftContext]:
        """(B, T, C) -> (B, T, C), plus the new left context (one ``(B, C, k - 1)`` tensor per level).

        ``left_context`` is the state returned by the previous call (causal streaming only).
        """
        if left_context is not None and not self.causal:
            raise ValueError("left_context is only supported in causal mode")
        if left_context is not None and len(left_context) != len(self.layers):
            raise ValueError("left_context must hold one tensor per focal level")
        z = self.in_proj(x)
        query = z[..., : self.dim]
        context = z[..., self.dim : 2 * self.dim].transpose(1, 2)
        gates = z[..., 2 * self.dim :].transpose(1, 2)

        new_contexts: list[torch.Tensor] = []
        context_all = torch.zeros_like(context)
        for level, layer in enumerate(self.layers):
            kernel_size = self.kernel_sizes[level]
            if self.causal:
                cached: torch.Tensor | None = None if left_context is None else left_context[level]
                padded = prepend_context(context, cached, kernel_size - 1)
                new_contexts.append(padded[..., padded.shape[-1] - (kernel_size - 1) :])
            else:
                padded = pad_same(context, kernel_size)
            context = layer(padded)
            context_all = context_all + context * gates[:, level : level + 1]
        if not self.causal:
            context_global = F.gelu(context.mean(dim=-1, keepdim=True))
            context_all = context_all + context_global * gates[:, self.focal_level :]
        if self.normalize_modulator:
            context_all = context_all / (self.focal_level + 1)

        modulator = self.context_proj(context_all)
        output = self.dropout(self.out_proj(self.norm(query * modulator.transpose(1, 2))))
        if self.store_hidden:
            self.gates, self.modulator = gates, modulator
        if not self.causal:
            return output, None
        return output, new_contexts


class FocalBlock(nn.Module):
    """Residual focal modulation followed by a residual feed-forward, pre-norm or post-norm.

    Arguments
    ---------
    dim : channels ``C``.
    ffn_dim : feed-forward hidden channels.
    use_layerscale : learnable per-channel residual scales ``modulation_gamma`` / ``feed_forward_gamma``.
    layerscale_init : their initial value.
    Other arguments : see ``FocalModulation``.
    """

    def __init__(
        self,
        dim: int,
        ffn_dim: int,
        focal_window: int = 14,
        focal_level: int = 2,
        focal_factor: int = 4,
        dropout: float = 0.0,
        use_post_norm: bool = False,
        use_layerscale: bool = False,
        layerscale_init: float = 1e-4,
        tanhscale_init: float = 0.5,
        normalize_modulator: bool = False,
        causal: bool = False,
        window_size: int = 512,
    ) -> None:
        super().__init__()
        self.use_post_norm = use_post_norm
        self.use_layerscale = use_layerscale
        self.modulation_norm = _norm(dim, causal, tanhscale_init)
        self.modulation = FocalModulation(
            dim,
            focal_window=focal_window,
            focal_level=focal_level,
            focal_factor=focal_factor,
            dropout=dropout,
            use_post_norm=use_post_norm,
            normalize_modulator=normalize_modulator,
            causal=causal,
            window_size=window_size,
            tanhscale_init=tanhscale_init,
        )
        self.feed_forward_norm = _norm(dim, causal, tanhscale_init)
        self.feed_forward = FeedForward(dim, ffn_dim, dropout)
        self.modulation_gamma: nn.Parameter | float
        self.feed_forward_gamma: nn.Parameter | float
        if use_layerscale:
            self.modulation_gamma = nn.Parameter(torch.full((dim,), float(layerscale_init)))
            self.feed_forward_gamma = nn.Parameter(torch.full((dim,), float(layerscale_init)))
        else:
            self.modulation_gamma = self.feed_forward_gamma = 1.0

    def forward(self, x: torch.Tensor, left_context: LeftContext = None) -> tuple[torch.Tensor, LeftContext]:
        """(B, T, C) -> (B, T, C), plus the modulation's new left context.

        The pre-norm path (every recipe's) adds its residuals in place, as upstream: the same values in the
        same memory layout, so that the backward sums gradients in upstream's order (out of place, they
        differ by ulps that training amplifies). The post-norm path adds out of place: in causal mode its
        norm (DynamicTanh) keeps its output for the backward, which an in-place add would overwrite.
        """
        if self.use_post_norm:
            modulated, left_context = self.modulation(x, left_context)
            x = x + self.modulation_gamma * self.modulation_norm(modulated)
            return x + self.feed_forward_gamma * self.feed_forward_norm(self.feed_forward(x)), left_context
        out, left_context = self.modulation(self.modulation_norm(x), left_context)  # a linear layer's output
        if self.use_layerscale:
            out *= self.modulation_gamma
        out += x
        shortcut = out
        out = self.feed_forward(self.feed_forward_norm(out))  # a linear layer's output too
        if self.use_layerscale:
            out *= self.feed_forward_gamma
        out += shortcut
        return out, left_context


class FocalDownScale(nn.Module):
    """Encoder layer: ``DownScale`` to the new width and frame rate, then a ``FocalBlock`` (ffn 4x).

    Arguments
    ---------
    input_dim : input channels.
    output_dim : output channels ``C``.
    factor : downscale factor.
    **block_kwargs : forwarded to ``FocalBlock`` (``causal`` also to ``DownScale``).
    """

    def __init__(self, input_dim: int, output_dim: int, factor: int = 1, **block_kwargs) -> None:
        super().__init__()
        self.downscale = DownScale(input_dim, output_dim, factor, block_kwargs.get("causal", False))
        self.focal_block = FocalBlock(output_dim, 4 * output_dim, **block_kwargs)

    def forward(self, x: torch.Tensor, left_context: LeftContext = None) -> tuple[torch.Tensor, LeftContext]:
        """(B, T, C_in) -> (B, T', C), plus the new ``[downscale, level_0, ..., level_L]`` causal context."""
        downscale_context: torch.Tensor | None = None if left_context is None else left_context[0]
        focal_context: LeftContext = None if left_context is None else left_context[1:]
        x, downscale_context = self.downscale(x, downscale_context)
        x, focal_context = self.focal_block(x, focal_context)
        if downscale_context is None or focal_context is None:
            return x, None
        return x, [downscale_context] + focal_context  # noqa: RUF005 (TorchScript cannot unpack a list)


class FocalUpScale(nn.Module):
    """Decoder layer: a ``FocalBlock`` (ffn 4x) at the input width, then ``UpScale``.

    Arguments
    ---------
    input_dim : input channels ``C``.
    output_dim : output channels.
    factor : upscale factor.
    **block_kwargs : forwarded to ``FocalBlock`` (``causal`` also to ``UpScale``).
    """

    def __init__(self, input_dim: int, output_dim: int, factor: int = 1, **block_kwargs) -> None:
        super().__init__()
        self.focal_block = FocalBlock(input_dim, 4 * input_dim, **block_kwargs)
        self.upscale = UpScale(input_dim, output_dim, factor, block_kwargs.get("causal", False))

    def forward(self, x: torch.Tensor, left_context: LeftContext = None) -> tuple[torch.Tensor, LeftContext]:
        """(B, T, C) -> (B, T * factor, C_out), plus the new ``[level_0, ..., level_L, upscale]`` context."""
        focal_context: LeftContext = None if left_context is None else left_context[:-1]
        upscale_context: torch.Tensor | None = None if left_context is None else left_context[-1]
        x, focal_context = self.focal_block(x, focal_context)
        x, upscale_context = self.upscale(x, upscale_context)
        if upscale_context is None or focal_context is None:
            return x, None
        return x, focal_context + [upscale_context]  # noqa: RUF005 (TorchScript cannot unpack a list)


class ChunkFeedForward(nn.Module):
    """Residual MLP over non-overlapping chunks of ``chunk_size`` frames (the decoder's lookahead refiner).

    Chunks start at frame 0; the last one is zero-padded. Output frame ``t`` depends on the input frames of
    its chunk only.

    Arguments
    ---------
    dim : channels ``C``.
    chunk_size : frames per chunk ``c``; the MLP works on ``c * C`` features.
    dropout : dropout probability.
    """

    def __init__(self, dim: int, chunk_size: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.chunk_size = chunk_size
        self.in_proj = nn.Linear(chunk_size * dim, chunk_size * dim)
        self.out_proj = nn.Linear(chunk_size * dim, chunk_size * dim)
        self.activation = nn.GELU()
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, C) -> (B, T, C)."""
        B, T, C = x.shape
        num_chunks = (T + self.chunk_size - 1) // self.chunk_size  # integer ops: traced for ONNX export
        chunks = F.pad(x.reshape(B, T * C), (0, (num_chunks * self.chunk_size - T) * C))
        chunks = chunks.reshape(B, num_chunks, self.chunk_size * C)
        chunks = self.dropout(self.out_proj(self.dropout(self.activation(self.in_proj(chunks)))))
        return x + chunks.reshape(B, -1)[:, : T * C].reshape(B, T, C)


def _check_left_contexts(left_contexts: list[LeftContext] | None, num_layers: int) -> None:
    """``None``, or one (possibly ``None``) left context per layer."""
    if left_contexts is not None and len(left_contexts) != num_layers:
        raise ValueError(f"expected {num_layers} left contexts, got {len(left_contexts)}")


class _StoredHidden:
    """The stored hidden states of a stack of focal layers (``self.layers``), upstream's inspection API."""

    @property
    def gates(self) -> list[torch.Tensor]:
        """Per layer, the gates (B, focal_level + 1, T) of its last forward (upstream's; NaN unless the
        layer's ``focal_block.modulation.store_hidden`` is set)."""
        return [layer.focal_block.modulation.gates for layer in self.layers]

    @property
    def modulators(self) -> list[torch.Tensor]:
        """Per layer, the modulator (B, C, T) of its last forward (see :attr:`gates`)."""
        return [layer.focal_block.modulation.modulator for layer in self.layers]


@remembers_config
class FocalEncoder(_StoredHidden, nn.Module):
    """FocalCodec compressor: features (B, T, input_dim) -> latents (B, T', output_dim), not normalised.

    ``T' = ceil(T / prod(downscale_factors))`` for factors of 1 and 2.

    Streaming (causal only): pass the returned ``left_contexts`` back with the next chunk. The
    concatenated chunk outputs equal the full-sequence output when every chunk but the last has a
    multiple of ``chunk_size`` frames.

    Arguments
    ---------
    input_dim : input feature channels.
    output_dim : latent channels (code bits).
    hidden_dims : width of each layer.
    downscale_factors : temporal downscale factor of each layer.
    focal_window, focal_level, focal_factor : focal modulation kernels (``focal_factor * l + focal_window``).
    dropout : dropout probability everywhere.
    use_post_norm, use_layerscale, layerscale_init, tanhscale_init, normalize_modulator : see ``FocalBlock``.
    causal : causal mode (FocalCodec-Stream).
    window_size : kernel of the causal window level.
    """

    def __init__(
        self,
        input_dim: int = 1024,
        output_dim: int = 12,
        hidden_dims: tuple[int, ...] | list[int] = (1024, 1024, 1024),
        downscale_factors: tuple[int, ...] | list[int] = (1, 1, 1),
        focal_window: int = 14,
        focal_level: int = 2,
        focal_factor: int = 4,
        dropout: float = 0.0,
        use_post_norm: bool = False,
        use_layerscale: bool = False,
        layerscale_init: float = 1e-4,
        tanhscale_init: float = 0.5,
        normalize_modulator: bool = False,
        causal: bool = False,
        window_size: int = 512,
    ) -> None:
        super().__init__()
        if len(hidden_dims) != len(downscale_factors):
            raise ValueError("hidden_dims and downscale_factors must have the same length")
        self.causal = causal
        self.downsample_factor = math.prod(downscale_factors)
        self.chunk_size = self.downsample_factor
        block_kwargs = dict(
            focal_window=focal_window,
            focal_level=focal_level,
            focal_factor=focal_factor,
            dropout=dropout,
            use_post_norm=use_post_norm,
            use_layerscale=use_layerscale,
            layerscale_init=layerscale_init,
            tanhscale_init=tanhscale_init,
            normalize_modulator=normalize_modulator,
            causal=causal,
            window_size=window_size,
        )
        dims = [input_dim, *hidden_dims]
        self.layers = nn.ModuleList(
            FocalDownScale(dims[i], dims[i + 1], factor, **block_kwargs)
            for i, factor in enumerate(downscale_factors)
        )
        self.dropout = nn.Dropout(dropout)
        self.out_proj = nn.Linear(hidden_dims[-1], output_dim)

    def forward(
        self, input: torch.Tensor, left_contexts: list[LeftContext] | None = None
    ) -> tuple[torch.Tensor, list[LeftContext]]:
        """(B, T, input_dim) -> (B, T', output_dim), plus one left context per layer (None if not causal)."""
        _check_left_contexts(left_contexts, len(self.layers))
        x = input
        new_left_contexts: list[LeftContext] = []
        for i, layer in enumerate(self.layers):
            left_context: LeftContext = None if left_contexts is None else left_contexts[i]
            x, left_context = layer(x, left_context)
            new_left_contexts.append(left_context)
        return self.out_proj(self.dropout(x)), new_left_contexts


@remembers_config
class FocalDecoder(_StoredHidden, nn.Module):
    """FocalCodec decompressor: codes (B, T', input_dim) -> features (B, T' * upsample_factor, output_dim).

    In causal mode with ``lookahead_size > 0`` a ``ChunkFeedForward`` refiner over chunks of
    ``chunk_size = 1 + lookahead_size`` output frames follows the layers, so output frame ``t`` sees the
    input up to the end of its chunk. Streaming (causal only): pass the returned ``left_contexts`` back with
    the next chunk; outputs match the full-sequence call when every chunk but the last yields a multiple of
    ``chunk_size`` output frames.

    Arguments
    ---------
    input_dim : code channels.
    output_dim : output feature channels.
    hidden_dims : width of each layer.
    upscale_factors : temporal upscale factor of each layer.
    last_window_size : causal window kernel of the last layer (the others use ``window_size``).
    lookahead_size : frames of lookahead of the causal refiner.
    Other arguments : see ``FocalEncoder``.
    """

    def __init__(
        self,
        input_dim: int = 12,
        output_dim: int = 1024,
        hidden_dims: tuple[int, ...] | list[int] = (1024, 1024, 1024),
        upscale_factors: tuple[int, ...] | list[int] = (1, 1, 1),
        focal_window: int = 14,
        focal_level: int = 2,
        focal_factor: int = 4,
        dropout: float = 0.0,
        use_post_norm: bool = False,
        use_layerscale: bool = False,
        layerscale_init: float = 1e-4,
        tanhscale_init: float = 0.5,
        normalize_modulator: bool = False,
        causal: bool = False,
        window_size: int = 512,
        last_window_size: int = 512,
        lookahead_size: int = 3,
    ) -> None:
        super().__init__()
        if len(hidden_dims) != len(upscale_factors):
            raise ValueError("hidden_dims and upscale_factors must have the same length")
        self.causal = causal
        self.upsample_factor = math.prod(upscale_factors)
        self.chunk_size = 1 + lookahead_size
        block_kwargs = dict(
            focal_window=focal_window,
            focal_level=focal_level,
            focal_factor=focal_factor,
            dropout=dropout,
            use_post_norm=use_post_norm,
            use_layerscale=use_layerscale,
            layerscale_init=layerscale_init,
            tanhscale_init=tanhscale_init,
            normalize_modulator=normalize_modulator,
            causal=causal,
        )
        dims = [*hidden_dims, output_dim]
        num_layers = len(upscale_factors)
        self.in_proj = nn.Linear(input_dim, dims[0])
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            FocalUpScale(
                dims[i],
                dims[i + 1],
                factor,
                window_size=last_window_size if i == num_layers - 1 else window_size,
                **block_kwargs,
            )
            for i, factor in enumerate(upscale_factors)
        )
        self.refiner = (
            ChunkFeedForward(output_dim, self.chunk_size, dropout)
            if causal and lookahead_size > 0
            else nn.Identity()
        )

    def forward(
        self, input: torch.Tensor, left_contexts: list[LeftContext] | None = None
    ) -> tuple[torch.Tensor, list[LeftContext]]:
        """(B, T', input_dim) -> (B, T' * upsample_factor, output_dim), plus one left context per layer."""
        _check_left_contexts(left_contexts, len(self.layers))
        x = self.dropout(self.in_proj(input))
        new_left_contexts: list[LeftContext] = []
        for i, layer in enumerate(self.layers):
            left_context: LeftContext = None if left_contexts is None else left_contexts[i]
            x, left_context = layer(x, left_context)
            new_left_contexts.append(left_context)
        return self.refiner(x), new_left_contexts
