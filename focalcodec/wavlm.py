"""WavLM encoder: a CNN feature extractor followed by a transformer with gated relative position bias.

FocalCodec uses the first 6 layers of WavLM-Large, frozen, as its feature extractor (16 kHz audio in,
50 Hz features of size 1024 out). In causal mode (FocalCodec-Stream) every convolution is left-padded and
attention is chunked-causal, so the model can also run chunk by chunk with carried state.

Causal streaming state (``forward``'s outputs after the features), for ``R = window_size - (1 +
lookahead_size)`` cached frames:

* ``curr_pos``: 0-dim int64, the number of valid cached frames (saturates at ``R``);
* ``left_contexts``: one channels-first context per CNN block, then the positional convolution's
  ``(B, D, conv_pos - 1)``: the input frames the next output of each convolution starts from;
* ``kv_caches``: per layer ``(B, R, H, hd, 2)`` keys (``[..., 0]``) and values (``[..., 1]``) of the last
  ``R`` frames, right-aligned (the newest frame last; zeros before the ``curr_pos`` valid rows).

Every shape is fixed by the call's input length, and the masks are tensor functions of ``curr_pos``, so one
streaming step of a fixed chunk length traces to a single graph valid at every position.
"""

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from focalcodec.config import remembers_config
from focalcodec.layers import causal_conv1d, windowed_conv1d
from focalcodec.wavlm_cnn import FeatureExtractor

__all__ = ["WINDOWED_FRAMES", "WavLM", "relative_position_bucket"]


def relative_position_bucket(relative: torch.Tensor, num_buckets: int, max_distance: int) -> torch.Tensor:
    """Bucket index of each relative position ``r = key - query`` (T5/WavLM bucketing, bidirectional).

    Half of the buckets are for ``r > 0``. Within each half, distances below ``num_buckets // 4`` get their
    own bucket and larger ones share logarithmically spaced buckets up to ``max_distance``.

    Arguments
    ---------
    relative : (...) int64 relative positions.
    num_buckets : total number of buckets.
    max_distance : distance from which every position falls into the last bucket of its half.

    Returns
    -------
    (...) int64 bucket indices in ``[0, num_buckets)``.
    """
    half = num_buckets // 2
    exact = half // 2
    distance = relative.abs()
    log_ratio = (distance.clamp(min=1).float() / exact).log() / math.log(max_distance / exact)
    far = (log_ratio * (half - exact) + exact).long().clamp(max=half - 1)
    near_or_far = torch.where(distance < exact, distance, far)
    return (relative > 0).long() * half + near_or_far


WINDOWED_FRAMES = 8
"""Streaming steps of at most this many frames run the positional convolution as ``windowed_conv1d``."""


class PositionalEmbedding(nn.Module):
    """Convolutional positional embedding: ``x + GELU(Conv1d(x))`` with a grouped, wide kernel.

    Non-causal: 'same'-style padding ``k // 2`` on both sides, dropping the extra last frame when ``k`` is
    even. Causal: replicate left padding of ``k - 1`` frames (or the carried context).

    Arguments
    ---------
    dim : channels ``D``.
    kernel_size : ``conv_pos``.
    groups : ``conv_pos_groups``.
    causal : causal convolution.
    """

    def __init__(self, dim: int, kernel_size: int, groups: int, causal: bool) -> None:
        super().__init__()
        self.causal = causal
        self.groups = groups
        self.windowed_frames = WINDOWED_FRAMES
        padding = 0 if causal else kernel_size // 2
        self.conv = nn.Conv1d(dim, dim, kernel_size, padding=padding, groups=groups)

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, T, D) -> (B, T, D), plus the causal left context (``None`` when non-causal)."""
        h = x.transpose(1, 2)
        if self.causal and context is not None and 0 < x.shape[1] <= self.windowed_frames:  # a streaming step
            h = torch.cat([context, h], dim=-1)
            context = h[..., x.shape[1] :]
            h = windowed_conv1d(h, self.conv.weight, self.conv.bias, self.groups)
        elif self.causal:
            h, context = causal_conv1d(h, context, self.conv.weight, self.conv.bias, 1, self.groups)
        else:
            h = self.conv(h)[..., : x.shape[1]]
        return x + F.gelu(h).transpose(1, 2), context


class GatedRelativeAttention(nn.Module):
    """Multi-head self-attention with WavLM's gated relative position bias ("gru_rel_pos").

    The shared position bias ``P`` (H, T, S) is scaled per query and head by
    ``gate = a * (b * c - 1) + 2``, where ``a, b`` are sigmoids of a small projection of the normalised
    input and ``c`` is a learnable constant per head. Attention itself is
    ``softmax(q kᵀ / sqrt(hd) + gate * P + mask) v`` via ``F.scaled_dot_product_attention``.

    Arguments
    ---------
    dim : model width ``D``.
    num_heads : number of heads ``H`` (head size ``hd = D / H``).
    """

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.gru_rel_pos_const = nn.Parameter(torch.ones(1, num_heads, 1, 1))
        self.qkv_proj = nn.Linear(dim, 3 * dim)
        self.out_proj = nn.Linear(dim, dim)
        self.gru_rel_pos_linear = nn.Linear(self.head_dim, 8)

    def forward(
        self,
        h: torch.Tensor,
        position_bias: torch.Tensor,
        mask: torch.Tensor | None = None,
        kv_cache: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attend the T new frames to the cached frames and themselves (S = cached + T keys).

        Arguments
        ---------
        h : (B, T, D) normalised layer input.
        position_bias : (H, T, S) relative position bias.
        mask : additive mask (0 or -inf) broadcastable to (B, H, T, S), or ``None``.
        kv_cache : (B, S - T, H, hd, 2) keys and values of earlier frames (causal mode; ``(B, 0, H, hd, 2)``
            on a fresh stream), or ``None`` (non-causal: nothing to cache).

        Returns
        -------
        (B, T, D) output, then the keys and values of all S frames, (B, S, H, hd, 2) (``None`` without a
        cache): the cache followed by the new frames, in one concatenation (the cache layout), which the
        attention reads as strided views.
        """
        B, T, D = h.shape
        H = self.num_heads
        q, k, v = self.qkv_proj(h).view(B, T, 3 * H, self.head_dim).split(H, dim=2)  # each (B, T, H, hd)
        kv: torch.Tensor | None = None
        if kv_cache is not None:
            kv = torch.cat([kv_cache, torch.stack([k, v], dim=-1)], dim=1)
            k, v = kv.unbind(-1)

        heads = h.view(B, T, H, self.head_dim).transpose(1, 2)
        a, b = self.gru_rel_pos_linear(heads).view(B, H, T, 2, 4).sum(-1).sigmoid().chunk(2, dim=-1)
        gate = a * (b * self.gru_rel_pos_const - 1.0) + 2.0  # (B, H, T, 1)
        bias = gate * position_bias if mask is None else torch.addcmul(mask, gate, position_bias)

        out = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=bias
        )
        return self.out_proj(out.transpose(1, 2).reshape(B, T, D)), kv


class FeedForward(nn.Module):
    """Linear → GELU → dropout → Linear → dropout.

    Arguments
    ---------
    dim : model width ``D``.
    ffn_dim : hidden width.
    dropout : dropout probability.
    """

    def __init__(self, dim: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.in_proj = nn.Linear(dim, ffn_dim)
        self.out_proj = nn.Linear(ffn_dim, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> (B, T, D)."""
        return self.dropout(self.out_proj(self.dropout(F.gelu(self.in_proj(x)))))


class TransformerLayer(nn.Module):
    """Pre-LN transformer layer: ``x + MHA(LN(x))`` then ``x + FFN(LN(x))``.

    Arguments
    ---------
    dim, ffn_dim, num_heads : layer sizes.
    dropout : dropout probability on both residual branches.
    """

    def __init__(self, dim: int, ffn_dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.attention_norm = nn.LayerNorm(dim)
        self.attention = GatedRelativeAttention(dim, num_heads)
        self.dropout = nn.Dropout(dropout)
        self.feed_forward_norm = nn.LayerNorm(dim)
        self.feed_forward = FeedForward(dim, ffn_dim, dropout)

    def forward(
        self,
        x: torch.Tensor,
        position_bias: torch.Tensor,
        mask: torch.Tensor | None = None,
        kv_cache: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, T, D) -> (B, T, D), plus the attention's keys and values (B, S, H, hd, 2) (see there)."""
        h, kv = self.attention(self.attention_norm(x), position_bias, mask, kv_cache)
        x = x + self.dropout(h)
        return x + self.feed_forward(self.feed_forward_norm(x)), kv


class TransformerEncoder(nn.Module):
    """Positional convolution, then pre-LN layers sharing one relative position bias (no final norm).

    Arguments
    ---------
    num_layers, dim, ffn_dim, num_heads : transformer sizes.
    num_buckets, max_distance : relative position bucketing (see :func:`relative_position_bucket`).
    dropout : dropout probability.
    conv_pos, conv_pos_groups : positional convolution kernel size and groups.
    causal : causal positional convolution and chunked-causal attention.
    window_size : causal mode, maximum number of frames a query attends to.
    lookahead_size : causal mode, attention chunks are ``1 + lookahead_size`` frames long.
    """

    def __init__(
        self,
        num_layers: int,
        dim: int,
        ffn_dim: int,
        num_heads: int,
        num_buckets: int,
        max_distance: int,
        dropout: float,
        conv_pos: int,
        conv_pos_groups: int,
        causal: bool,
        window_size: int,
        lookahead_size: int,
    ) -> None:
        super().__init__()
        self.num_buckets = num_buckets
        self.max_distance = max_distance
        self.causal = causal
        self.window_size = window_size
        self.chunk = 1 + lookahead_size
        self.cache_size = max(0, window_size - self.chunk)
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.positional_embedding = PositionalEmbedding(dim, conv_pos, conv_pos_groups, causal)
        self.relative_embedding = nn.Embedding(num_buckets, num_heads)
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            TransformerLayer(dim, ffn_dim, num_heads, dropout) for _ in range(num_layers)
        )

    def position_bias(
        self, query_start: int, num_queries: int, key_start: int, num_keys: int
    ) -> torch.Tensor:
        """Relative position bias (H, T, S) between queries and keys at the given frame positions.

        Only the ``T + S - 1`` distinct relative positions are embedded; the matrix gathers from them (an
        index gather rather than ``unfold``, which ONNX export cannot express for traced sizes).
        """
        device = self.relative_embedding.weight.device
        lowest = key_start - (query_start + num_queries - 1)
        relative = torch.arange(lowest, lowest + num_queries + num_keys - 1, device=device)
        buckets = relative_position_bucket(relative, self.num_buckets, self.max_distance)
        values = self.relative_embedding(buckets).transpose(0, 1)  # (H, T + S - 1): r = lowest + m
        offsets = (
            torch.arange(num_keys, device=device)[None, :] - torch.arange(num_queries, device=device)[:, None]
        )
        return values[:, offsets + num_queries - 1]  # [h, i, j] = values[h, j - i + T - 1]

    def causal_mask(
        self, curr_pos: torch.Tensor, num_cached: int, num_new: int, dtype: torch.dtype
    ) -> torch.Tensor | None:
        """Additive (P, 1, T or 1, S) mask of ``num_new`` new frames over ``num_cached`` cached rows and
        themselves, for ``P = 1`` position (0-dim ``curr_pos``) or one per stream (``curr_pos`` (B,)).

        Key ``j`` sits at ``r_j = j - num_cached`` relative to the first new frame; the cached rows before the
        last ``p = curr_pos`` are invalid. With more than one chunk of new frames, query ``i`` also only sees
        ``[e_i - window_size, e_i)``, where ``e_i = min(((p + i) // c + 1) c, p + T) - p`` (upstream's chunk
        boundaries, counted from the valid cached frames). Returns ``None`` when nothing is masked.
        """
        if num_cached == 0 and num_new <= self.chunk:
            return None
        device = self.relative_embedding.weight.device
        keys = torch.arange(-num_cached, num_new, device=device)
        p = curr_pos.to(device).reshape(-1, 1, 1)
        allowed = keys >= -p  # (P, 1, S): the same for every query
        if num_new > self.chunk:
            queries = torch.arange(num_new, device=device)[:, None]
            end = torch.clamp((p + queries) // self.chunk * self.chunk + self.chunk, max=p + num_new) - p
            allowed = allowed & (keys >= end - self.window_size) & (keys < end)  # (P, T, S)
        mask = torch.zeros(allowed.shape, dtype=dtype, device=device)
        return mask.masked_fill(~allowed, -math.inf)[:, None]

    def window_cache(self, kv: torch.Tensor) -> torch.Tensor:
        """Keys and values (B, S, H, hd, 2) -> cache (B, R, H, hd, 2) of the last R frames, zeros before S
        (a view of ``kv`` when S >= R: nothing is copied)."""
        num_keys = kv.shape[1]
        if num_keys >= self.cache_size:
            return kv[:, num_keys - self.cache_size :]
        missing = kv.new_zeros(kv.shape[0], self.cache_size - num_keys, kv.shape[2], kv.shape[3], 2)
        return torch.cat([missing, kv], dim=1)

    def empty_caches(
        self, x: torch.Tensor, kv_caches: list[torch.Tensor] | None
    ) -> list[torch.Tensor | None]:
        """The given caches, or zero caches (B, R, H, hd, 2) for a fresh stream of ``x`` (B, T, D)."""
        caches: list[torch.Tensor | None] = []
        for i in range(len(self.layers)):
            if kv_caches is None:
                caches.append(x.new_zeros(x.shape[0], self.cache_size, self.num_heads, self.head_dim, 2))
            else:
                caches.append(kv_caches[i])
        return caches

    def forward(
        self,
        x: torch.Tensor,
        valid: torch.Tensor | None = None,
        curr_pos: torch.Tensor | None = None,
        pos_context: torch.Tensor | None = None,
        kv_caches: list[torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, list[torch.Tensor | None]]:
        """Encode T new frames.

        Arguments
        ---------
        x : (B, T, D) projected features.
        valid : (B, T) bool, False on padded frames (non-causal only), or ``None``.
        curr_pos : causal mode, int64 number of valid cached frames, 0-dim or one per stream (B,) (``None``: a
            fresh stream).
        pos_context : causal mode, left context of the positional convolution.
        kv_caches : causal mode, per layer (B, R, H, hd, 2) keys/values of the last R frames, or ``None``.

        Returns
        -------
        (B, T, D), the new ``curr_pos``, the new positional-convolution context, and per layer the keys/values
        of the last R frames (B, R, H, hd, 2) in causal mode or ``None`` otherwise.
        """
        mask: torch.Tensor | None = None
        if valid is not None:
            x = x * valid[..., None]
            mask = torch.zeros(valid.shape, dtype=x.dtype, device=x.device).masked_fill(~valid, -math.inf)
            mask = mask[:, None, None, :]  # (B, 1, 1, T)
        x, pos_context = self.positional_embedding(x, pos_context)
        x = self.dropout(x)
        if not self.causal:
            position_bias = self.position_bias(0, x.shape[1], 0, x.shape[1])
            no_caches: list[torch.Tensor | None] = []
            for layer in self.layers:
                x = layer(x, position_bias, mask, None)[0]
                no_caches.append(None)
            return x, torch.zeros((), dtype=torch.long, device=x.device), pos_context, no_caches
        return self.causal_forward(x, curr_pos, pos_context, kv_caches)

    def causal_forward(
        self,
        x: torch.Tensor,
        curr_pos: torch.Tensor | None,
        pos_context: torch.Tensor | None,
        kv_caches: list[torch.Tensor] | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, list[torch.Tensor | None]]:
        """The causal layers of :meth:`forward` (see there), after the positional embedding."""
        num_new = x.shape[1]
        if curr_pos is None:
            curr_pos = torch.zeros((), dtype=torch.long, device=x.device)
        if num_new == 0:  # piece too short to complete a frame: nothing to attend, nothing to cache
            return x, curr_pos, pos_context, self.empty_caches(x, kv_caches)
        num_cached = 0 if kv_caches is None else kv_caches[0].shape[1]
        position_bias = self.position_bias(0, num_new, -num_cached, num_cached + num_new)
        mask = self.causal_mask(curr_pos, num_cached, num_new, x.dtype)
        new_caches: list[torch.Tensor | None] = []
        for i, layer in enumerate(self.layers):
            if kv_caches is None:  # a fresh stream: nothing cached yet
                cache = x.new_zeros(x.shape[0], 0, self.num_heads, self.head_dim, 2)
            else:
                cache = kv_caches[i]
            x, kv = layer(x, position_bias, mask, cache)
            assert kv is not None  # a cache in, keys and values out (refines the Optional for TorchScript)
            new_caches.append(self.window_cache(kv))
        return x, torch.clamp(curr_pos + num_new, max=self.cache_size), pos_context, new_caches


@remembers_config
class WavLM(nn.Module):
    """WavLM encoder (layer-norm CNN feature extractor + gated relative position transformer).

    Non-causal by default. With ``causal=True`` (FocalCodec-Stream) all convolutions are causal and
    attention is chunked-causal, and ``forward`` can be called on consecutive pieces of a signal by passing
    back the returned state (see the module docstring). Pieces of a multiple of ``chunk_size`` samples give
    the frames of one call on the whole signal (for several chunks per call, if ``window_size`` is a
    multiple of ``1 + lookahead_size``). A shorter last piece attends to the ``R`` cached frames and itself
    (upstream's unpadded last chunk), which can differ from the full-sequence call.

    Arguments
    ---------
    hidden_dims, kernel_sizes, strides : CNN feature extractor, one entry per block.
    num_layers : number of transformer layers.
    dim : transformer width.
    ffn_dim : feed-forward hidden width.
    num_heads : attention heads.
    num_buckets, max_distance : relative position bucketing.
    max_cached_steps : upstream size of the cached relative position table. This implementation computes
        the (cheap) table on the fly in every forward, so the value is only validated.
    dropout : dropout probability everywhere.
    conv_pos, conv_pos_groups : positional convolution kernel size and groups.
    causal : causal mode.
    window_size : causal mode, maximum number of frames a query attends to.
    lookahead_size : causal mode, frames of lookahead; attention chunks are ``1 + lookahead_size`` frames.
    use_flex_attention : accepted for config compatibility. Upstream then uses the compiled flex-attention
        kernel under no_grad in eval; the maths is identical, so this implementation always uses
        ``F.scaled_dot_product_attention``.
    """

    def __init__(
        self,
        hidden_dims: Sequence[int] = (512,) * 7,
        kernel_sizes: Sequence[int] = (10, 3, 3, 3, 3, 2, 2),
        strides: Sequence[int] = (5, 2, 2, 2, 2, 2, 2),
        num_layers: int = 6,
        dim: int = 1024,
        ffn_dim: int = 4096,
        num_heads: int = 16,
        num_buckets: int = 320,
        max_distance: int = 800,
        max_cached_steps: int = 2048,
        dropout: float = 0.0,
        conv_pos: int = 128,
        conv_pos_groups: int = 16,
        causal: bool = False,
        window_size: int = 512,
        lookahead_size: int = 3,
        use_flex_attention: bool = False,
    ) -> None:
        super().__init__()
        if 0 < max_cached_steps < window_size:
            raise ValueError(
                f"max_cached_steps ({max_cached_steps}) must be 0 or >= window_size ({window_size})"
            )
        self.sample_rate = 16000
        self.max_cached_steps = max_cached_steps
        self.causal = causal
        self.window_size = window_size
        self.lookahead_size = lookahead_size
        self.use_flex_attention = use_flex_attention
        self.downsample_factor = math.prod(strides)
        self.chunk_size = self.downsample_factor * (1 + lookahead_size)

        self.feature_extractor = FeatureExtractor(hidden_dims, kernel_sizes, strides, dropout, causal)
        self.norm = nn.LayerNorm(hidden_dims[-1])
        self.feature_proj = nn.Linear(hidden_dims[-1], dim)
        self.dropout = nn.Dropout(dropout)
        self.encoder = TransformerEncoder(
            num_layers,
            dim,
            ffn_dim,
            num_heads,
            num_buckets,
            max_distance,
            dropout,
            conv_pos,
            conv_pos_groups,
            causal,
            window_size,
            lookahead_size,
        )

    def forward(
        self,
        input: torch.Tensor,
        curr_pos: torch.Tensor | None = None,
        left_contexts: list[torch.Tensor | None] | None = None,
        kv_caches: list[torch.Tensor] | None = None,
        length: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor | None], list[torch.Tensor | None]]:
        """Waveform to features.

        Arguments
        ---------
        input : (B, N) waveform at 16 kHz.
        curr_pos : causal streaming, 0-dim int64 number of valid cached frames returned by the previous call.
        left_contexts : causal streaming, convolution contexts returned by the previous call.
        kv_caches : causal streaming, attention caches returned by the previous call.
        length : (B,) relative lengths in (0, 1] (non-causal only; ignored in causal mode). Frames past
            ``ceil(length * T)`` are zeroed before the positional convolution and masked as keys.

        Returns
        -------
        feats : (B, T, dim); ``T = floor((N - 400) / 320) + 1`` (N >= 400) non-causal, ``ceil(N / 320)``
            causal (for the default strides and kernels, on a first call).
        curr_pos : 0-dim int64, valid cached frames after this call, at most ``R`` (causal), zero otherwise.
        left_contexts : one context per CNN block plus one for the positional convolution (``None`` each
            when non-causal).
        kv_caches : per layer (B, R, H, hd, 2) keys/values of the last ``R`` frames, right-aligned (causal),
            ``None`` each otherwise.
        """
        streaming = curr_pos is not None or left_contexts is not None or kv_caches is not None
        if streaming and not self.causal:
            raise ValueError(
                "curr_pos, left_contexts and kv_caches are streaming state: they need causal=True"
            )
        num_blocks = len(self.feature_extractor.layers)
        contexts: list[torch.Tensor | None] = []
        if left_contexts is None:
            for _ in range(num_blocks + 1):
                contexts.append(None)
        else:
            contexts = left_contexts
        if len(contexts) != num_blocks + 1 or (
            kv_caches is not None and len(kv_caches) != len(self.encoder.layers)
        ):
            raise ValueError("left_contexts / kv_caches do not match this model's layers")

        x, conv_contexts = self.feature_extractor(input, contexts[:num_blocks])
        x = self.dropout(self.feature_proj(self.norm(x)))
        valid: torch.Tensor | None = None
        if length is not None and not self.causal:
            num_frames = x.shape[1]
            num_valid = (length.to(x.device) * num_frames).ceil().clamp(max=num_frames)
            valid = torch.arange(num_frames, device=x.device) < num_valid[:, None]
        x, curr_pos, pos_context, kv_caches_out = self.encoder(
            x, valid, curr_pos, contexts[num_blocks], kv_caches
        )
        conv_contexts.append(pos_context)
        return x, curr_pos, conv_contexts, kv_caches_out
