"""The fingerprint of a module's weights: what a run folder records of its frozen encoder, and what the
feature cache is keyed by."""

import hashlib

import torch

__all__ = ["encoder_fingerprint"]


def encoder_fingerprint(encoder: torch.nn.Module) -> str:
    """sha256 (64 hex digits) over the encoder's class and every state_dict tensor (name, dtype, shape,
    raw bytes)."""
    digest = hashlib.sha256(f"{type(encoder).__module__}.{type(encoder).__qualname__}".encode())
    for name, tensor in sorted(encoder.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()
