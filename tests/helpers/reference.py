"""Test helpers: parity reference vectors and state-dict listings (copied from the spec)."""

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
REFERENCE_DIR = DATA_DIR / "reference"
LISTING_DIR = DATA_DIR / "state_dict"
TINY_BSQ = yaml.safe_load((DATA_DIR.parent.parent / "hparams" / "tiny" / "bsq.yaml").read_text())
# WavLM kwargs of the small-model settings the quickstart and the recipe tests use
TINY_ENCODER = {
    key.removeprefix("encoder_"): value
    for key, value in TINY_BSQ.items()
    if key.startswith("encoder_") and key != "encoder_random_init"
}


@dataclass
class Listing:
    """A parsed ``state_dict/*.txt`` file: constructor kwargs, parameter count and key -> (shape, dtype)."""

    kwargs: dict
    num_parameters: int
    non_persistent: list
    entries: dict


def read_listing(name: str) -> Listing:
    """Parse ``tests/data/state_dict/<name>.txt``."""
    kwargs, num_parameters, non_persistent, entries = {}, None, [], {}
    for line in (LISTING_DIR / f"{name}.txt").read_text().splitlines():
        if line.startswith("# constructor kwargs:"):
            kwargs = ast.literal_eval(line.split(":", 1)[1].strip())
        elif line.startswith("# num_parameters"):
            num_parameters = int(line.rsplit(":", 1)[1])
        elif line.startswith("# non-persistent buffers"):
            non_persistent = ast.literal_eval(line.split(":", 1)[1].strip())
        elif line and not line.startswith("#"):
            key, shape, dtype = line.split("\t")
            entries[key] = (tuple(ast.literal_eval(shape)), dtype)
    return Listing(kwargs, num_parameters, non_persistent, entries)


def assert_matches_listing(module: torch.nn.Module, listing: Listing) -> None:
    """The module's state_dict has exactly the listed keys, shapes, dtypes and parameter count."""
    state = module.state_dict()
    assert sorted(state) == sorted(listing.entries), (
        f"missing: {sorted(set(listing.entries) - set(state))}, "
        f"unexpected: {sorted(set(state) - set(listing.entries))}"
    )
    for key, (shape, dtype) in listing.entries.items():
        assert tuple(state[key].shape) == shape, f"{key}: {tuple(state[key].shape)} != {shape}"
        assert str(state[key].dtype).removeprefix("torch.") == dtype, key
    assert sum(p.numel() for p in module.parameters()) == listing.num_parameters


def load_reference(name: str) -> dict:
    """Load a parity vector ``tests/data/reference/<name>.pt`` (see that folder's README)."""
    return torch.load(REFERENCE_DIR / f"{name}.pt", weights_only=True)


def reference_codec(name: str) -> tuple[torch.nn.Module, dict]:
    """The ``FocalCodec`` of the parity vector ``<name>.pt`` (strictly loaded, eval mode) and the file."""
    from focalcodec.codec import FocalCodec

    ref = load_reference(name)
    model = FocalCodec(**ref["config"])
    model.load_state_dict(ref["state_dict"], strict=True)
    return model.eval(), ref


def assert_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """The reference tolerance for float outputs (rtol 1e-4, atol 1e-5, float32)."""
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5)


def seeded(cls: type, config: dict, seed: int = 0, noise: float = 0.0) -> torch.nn.Module:
    """``cls(**config)`` built right after ``torch.manual_seed(seed)``; with ``noise``, every parameter is
    then shifted by N(0, noise²) drawn in ``parameters()`` order (how the parity vectors were made)."""
    torch.manual_seed(seed)
    model = cls(**config)
    with torch.no_grad():
        for parameter in model.parameters() if noise else ():
            parameter.add_(noise * torch.randn_like(parameter))
    return model


def assert_same_state(actual: dict, expected: dict) -> None:
    """Same keys in the same order (the parameter registration order) and bit-identical tensors."""
    assert list(actual) == list(expected)
    different = [key for key in expected if not torch.equal(actual[key], expected[key])]
    assert not different, f"{len(different)} of {len(expected)} tensors differ, e.g. {different[:3]}"


def initial_weights(name: str) -> dict:
    """Upstream's initial weights right after ``torch.manual_seed(0)`` (``init_weights.pt``): the entry of
    ``name`` with its ``config`` and ``state_dict``."""
    return load_reference("init_weights")["modules"][name]


def assert_matches_listing_part(module: torch.nn.Module, listing: Listing, prefix: str) -> None:
    """The module's state_dict has exactly the keys (without ``<prefix>.``) and shapes of one part of a
    whole-codec listing, e.g. the ``compressor`` of ``FocalCodec_50hz``."""
    entries = {
        key[len(prefix) + 1 :]: shape
        for key, (shape, _) in listing.entries.items()
        if key.startswith(f"{prefix}.")
    }
    state = {key: tuple(value.shape) for key, value in module.state_dict().items()}
    missing, unexpected = sorted(set(entries) - set(state)), sorted(set(state) - set(entries))
    assert state == entries, f"{prefix}: missing {missing[:5]}, unexpected {unexpected[:5]}"


def legacy_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state_dict the Feb 2025 code saved for ``model`` (layout of FocalCodec_50hz_legacy_key_map.txt)."""
    state = model.state_dict()
    legacy = {}
    for key, value in state.items():
        if ".qkv_proj." in key:
            for projection, part in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3), strict=True):
                legacy[key.replace("qkv_proj", projection)] = part.clone()
            continue
        key = re.sub(r"^compressor\.layers\.(\d+)\.downscale\.", r"compressor.layers.\1.0.", key)
        key = re.sub(r"^compressor\.layers\.(\d+)\.focal_block\.", r"compressor.layers.\1.1.", key)
        key = re.sub(r"^decompressor\.layers\.(\d+)\.focal_block\.", r"decompressor.layers.\1.0.", key)
        key = re.sub(r"^decompressor\.layers\.(\d+)\.upscale\.", r"decompressor.layers.\1.1.", key)
        legacy[key] = value.clone()
    dim = state["encoder.feature_proj.bias"].shape[0]
    legacy["encoder.encoder.norm.weight"] = torch.randn(dim)  # unused by the current code
    legacy["encoder.encoder.norm.bias"] = torch.randn(dim)
    legacy["quantizer.mask"] = 2 ** torch.arange(12, -1, -1)
    return legacy
