"""Binary spherical quantizer used at inference time inside FocalCodec.

A latent vector of ``dim = log2(codebook_size)`` values is quantised dimension by dimension to its sign,
scaled to the unit sphere: ``code_j = ±1/sqrt(dim)``. The sign pattern read as a binary number, **most
significant bit first** (dimension 0 carries ``2^(dim-1)``), is the token. There is nothing to learn, so
the module has no parameters and no persistent buffers (its state_dict is empty).

Training uses SpeechBrain's ``speechbrain.lobes.models.bsq.BinarySphericalQuantizer`` instead, which adds
the straight-through estimator and the entropy loss; both map the same input to the same tokens and codes.

The module scripts with ``torch.jit.script``, its conversion methods included (they are exported).
"""

import math
from typing import NamedTuple

import torch
from torch import nn

from focalcodec.config import remembers_config

__all__ = ["BinarySphericalQuantizer", "QuantizerOutput"]


class QuantizerOutput(NamedTuple):
    """What :meth:`BinarySphericalQuantizer.forward` returns (unpacks as ``toks, codes``)."""

    toks: torch.Tensor
    """(...) int64 tokens in ``[0, codebook_size)``."""
    codes: torch.Tensor
    """(..., dim) codes in ``±1/sqrt(dim)``."""


@remembers_config
class BinarySphericalQuantizer(nn.Module):
    """Sign quantizer on the unit hypersphere with ``codebook_size = 2^dim`` implicit codes.

    Arguments
    ---------
    codebook_size : number of codes, a power of two ``>= 2``; ``dim = log2(codebook_size)`` bits per code.

    Example
    -------
    >>> q = BinarySphericalQuantizer(codebook_size=8192)
    >>> toks, codes = q(torch.randn(2, 50, 13))
    >>> toks.shape, codes.shape
    (torch.Size([2, 50]), torch.Size([2, 50, 13]))
    >>> torch.equal(q.codes_to_toks(codes), toks) and torch.equal(q.toks_to_codes(toks), codes)
    True
    """

    def __init__(self, codebook_size: int = 4096) -> None:
        super().__init__()
        if codebook_size < 2 or codebook_size & (codebook_size - 1):
            raise ValueError(f"codebook_size must be a power of two >= 2, got {codebook_size}")
        self.codebook_size = codebook_size
        self.dim = codebook_size.bit_length() - 1
        self.register_buffer("codebook_value", torch.tensor(1 / math.sqrt(self.dim)), persistent=False)
        # Place value of each code dimension, MSB first: [2^(dim-1), ..., 2, 1].
        self.register_buffer("mask", 2 ** torch.arange(self.dim - 1, -1, -1), persistent=False)
        self.register_buffer("codebook", self.toks_to_codes(torch.arange(codebook_size)), persistent=False)

    def forward(self, lats: torch.Tensor) -> QuantizerOutput:
        """Quantise latents (no normalisation needed: only their signs matter).

        Arguments
        ---------
        lats : (..., dim) latents.

        Returns
        -------
        toks : (...) int64 tokens.
        codes : (..., dim) codes in ``±1/sqrt(dim)``.
        """
        codes = self.lats_to_codes(lats)
        return QuantizerOutput(self.codes_to_toks(codes), codes)

    @torch.jit.export
    def lats_to_codes(self, lats: torch.Tensor) -> torch.Tensor:
        """(..., dim) latents -> (..., dim) codes: ``+1/sqrt(dim)`` where ``lats > 0``, else ``-1/sqrt(dim)``.

        An exactly zero latent maps to the negative code.
        """
        return torch.where(lats > 0, self.codebook_value, -self.codebook_value)

    @torch.jit.export
    def lats_to_toks(self, lats: torch.Tensor) -> torch.Tensor:
        """(..., dim) latents -> (...) int64 tokens ``sum_j [lats_j > 0] * 2^(dim-1-j)``."""
        return ((lats > 0).long() * self.mask).sum(dim=-1)

    @torch.jit.export
    def codes_to_toks(self, codes: torch.Tensor) -> torch.Tensor:
        """(..., dim) codes -> (...) int64 tokens (same rule as :meth:`lats_to_toks`)."""
        return self.lats_to_toks(codes)

    @torch.jit.export
    def toks_to_codes(self, toks: torch.Tensor) -> torch.Tensor:
        """(...) integer tokens -> (..., dim) codes: bit ``j`` (MSB first) set gives ``+1/sqrt(dim)``."""
        bits = torch.div(toks[..., None], self.mask, rounding_mode="floor") % 2
        return (2 * bits - 1) * self.codebook_value
