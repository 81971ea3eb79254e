"""Input checks of the ``FocalCodec`` methods: each raises a ``TypeError``/``ValueError`` that names the
argument, the shape or values expected and, where it helps, the fix (e.g. ``sig[None]``)."""

from typing import Any

import torch

__all__ = [
    "check_float",
    "check_frames",
    "check_length",
    "check_matching_set",
    "check_positive_int",
    "check_signal",
    "check_tensor",
    "check_toks",
]


def check_tensor(x: Any, name: str) -> None:
    """``x`` is a tensor."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")


def check_float(x: torch.Tensor, name: str) -> None:
    """``x`` is a real floating-point tensor."""
    check_tensor(x, name)
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {x.dtype}")


def check_signal(sig: torch.Tensor) -> None:
    """``sig`` is a float (B, N) batch of mono waveforms with N >= 1."""
    check_float(sig, "sig")
    if sig.ndim == 1:
        raise ValueError(
            f"sig must have shape (B, N), got a 1-D tensor of {sig.shape[0]} samples: "
            "add the batch axis with sig[None]"
        )
    if sig.ndim == 3:
        raise ValueError(
            f"sig must have shape (B, N) (mono), got {tuple(sig.shape)}: for (B, C, N) multichannel audio "
            "mix down first, e.g. sig.mean(dim=1)"
        )
    if sig.ndim != 2 or sig.shape[1] == 0:
        raise ValueError(f"sig must have shape (B, N) with N >= 1, got {tuple(sig.shape)}")


def check_length(length: torch.Tensor, batch_size: int) -> None:
    """``length`` is a float (B,) tensor of relative lengths in (0, 1]."""
    check_float(length, "length")
    if tuple(length.shape) != (batch_size,):
        raise ValueError(f"length must have shape ({batch_size},), one per signal, got {tuple(length.shape)}")
    if not ((length > 0) & (length <= 1)).all():
        raise ValueError(f"length holds relative lengths (samples / N) in (0, 1], got {length.tolist()}")


def check_frames(x: torch.Tensor, name: str, dim: int) -> None:
    """``x`` is a float (B, T, dim) tensor with T >= 1."""
    check_float(x, name)
    if x.ndim != 3 or x.shape[1] == 0 or x.shape[2] != dim:
        hint = f": add the batch axis with {name}[None]" if x.ndim == 2 and x.shape[-1] == dim else ""
        raise ValueError(f"{name} must have shape (B, T, {dim}) with T >= 1, got {tuple(x.shape)}{hint}")


def check_toks(toks: torch.Tensor, codebook_size: int) -> None:
    """``toks`` is an integer (B, T) tensor (T >= 1) of values in ``[0, codebook_size)``."""
    check_tensor(toks, "toks")
    if toks.is_floating_point() or toks.is_complex() or toks.dtype == torch.bool:
        raise ValueError(f"toks must be an integer tensor (e.g. torch.long), got {toks.dtype}")
    if toks.ndim != 2 or toks.shape[1] == 0:
        hint = ": add the batch axis with toks[None]" if toks.ndim == 1 else ""
        raise ValueError(f"toks must have shape (B, T) with T >= 1, got {tuple(toks.shape)}{hint}")
    low, high = toks.min().item(), toks.max().item()
    if low < 0 or high >= codebook_size:
        raise ValueError(f"toks must lie in [0, {codebook_size}), got values in [{low}, {high}]")


def check_positive_int(value: Any, name: str) -> None:
    """``value`` is a Python integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def check_matching_set(matching_set: torch.Tensor, dim: int, num_splits: int) -> None:
    """``matching_set`` is a float (M, dim) tensor with M >= 1, searchable in ``num_splits`` pieces."""
    check_float(matching_set, "matching_set")
    if matching_set.ndim != 2 or matching_set.shape[0] == 0 or matching_set.shape[1] != dim:
        raise ValueError(
            f"matching_set must have shape (M, {dim}) with M >= 1, got {tuple(matching_set.shape)}"
        )
    check_positive_int(num_splits, "num_splits")
    if num_splits > matching_set.shape[0]:
        raise ValueError(f"num_splits ({num_splits}) exceeds the matching set size ({matching_set.shape[0]})")
