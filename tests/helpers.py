"""Test helpers: parity reference vectors and state-dict listings (copied from the spec)."""

import ast
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

DATA_DIR = Path(__file__).parent / "data"
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


def assert_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """The reference tolerance for float outputs (rtol 1e-4, atol 1e-5, float32)."""
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5)
