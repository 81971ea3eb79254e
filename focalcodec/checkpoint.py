"""Reading FocalCodec weight files: safetensors or torch files, and the legacy (Feb 2025) key layout."""

import os
from collections.abc import Iterable

import torch

__all__ = ["is_legacy_state_dict", "load_state_dict_file", "remap_legacy_state_dict"]

_LEGACY_PROJECTIONS = (".q_proj.", ".k_proj.", ".v_proj.")


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a flat state_dict from ``*.safetensors`` or a ``torch.save``d file (on CPU)."""
    path = os.fspath(path)
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        return load_file(path, device="cpu")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{path} does not hold a state_dict (found {type(state).__name__})")
    return state


def is_legacy_state_dict(state: Iterable[str]) -> bool:
    """True for checkpoints of the Feb 2025 code, whose attention has separate q/k/v projections."""
    return any(part in key for key in state for part in _LEGACY_PROJECTIONS)


def remap_legacy_state_dict(
    state: dict[str, torch.Tensor], target_keys: Iterable[str]
) -> dict[str, torch.Tensor]:
    """Convert a legacy FocalCodec state_dict to the current key layout (a no-op for current ones).

    * ``encoder.*`` / ``decoder.*``: ``qkv_proj`` is the concatenation of ``q_proj``, ``k_proj`` and
      ``v_proj`` along dim 0; every other key keeps its name.
    * ``compressor.*`` / ``decompressor.*``: legacy and current keys are matched by zipping the two
      sorted key lists (the legacy ``layers.i.0/1`` become ``layers.i.downscale/focal_block`` etc.).
    * Legacy keys without a target (``encoder.encoder.norm.*``, ``quantizer.mask``) are dropped.

    Arguments
    ---------
    state : the checkpoint's state_dict, keys prefixed by the codec's submodule names.
    target_keys : the keys of the model that will load the result.
    """
    if not is_legacy_state_dict(state):
        return state
    target_keys = set(target_keys)
    remapped = {}
    for key, value in state.items():
        if not key.startswith(("encoder.", "decoder.")) or ".k_proj." in key or ".v_proj." in key:
            continue
        if ".q_proj." in key:
            parts = [state[key.replace(".q_proj.", proj)] for proj in _LEGACY_PROJECTIONS]
            remapped[key.replace(".q_proj.", ".qkv_proj.")] = torch.cat(parts, dim=0)
        else:
            remapped[key] = value
    for prefix in ("compressor.", "decompressor."):
        legacy = sorted(key for key in state if key.startswith(prefix))
        current = sorted(key for key in target_keys if key.startswith(prefix))
        remapped.update({new: state[old] for old, new in zip(legacy, current, strict=False)})
    return {key: value for key, value in remapped.items() if key in target_keys}
