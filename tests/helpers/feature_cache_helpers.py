"""Shared pieces of the feature-cache tests (tests/feature_cache/): a tiny encoder, a small corpus
of 24 kHz wavs, building a cache of it and counting the encoder's calls."""

from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import yaml

from focalcodec.audio import load_audio
from focalcodec.wavlm import WavLM
from helpers.recipe_runner import ROOT
from helpers.reference import TINY_ENCODER
from utils.feature_cache import FeatureCache, build_feature_cache, manifest_entries

__all__ = [
    "DURATIONS",
    "TINY_BSQ",
    "TINY_ENCODER",
    "TINY_VOCOS",
    "CallCounter",
    "build",
    "cache_folders",
    "load",
    "reference_feats",
    "tiny_encoder",
    "write_corpus",
]

TINY_BSQ = yaml.safe_load((ROOT / "hparams" / "tiny" / "bsq.yaml").read_text())
TINY_VOCOS = yaml.safe_load((ROOT / "hparams" / "tiny" / "vocos.yaml").read_text())
DURATIONS = (1.0, 1.37, 0.9, 2.11, 1.6)  # seconds; every one holds a 22-frame decoder crop


def tiny_encoder(seed: int = 0, **overrides) -> WavLM:
    """The tests' small WavLM (64-dim features), seeded, frozen and in eval mode."""
    torch.manual_seed(seed)
    return WavLM(**{**TINY_ENCODER, **overrides}).eval().requires_grad_(False)


def load(path: str) -> torch.Tensor:
    """(N,) waveform of ``path`` at 16 kHz."""
    return load_audio(path, 16000)


def load_entry(entry) -> torch.Tensor:
    """(N,) waveform of a cache entry's file at 16 kHz (the cache's ``load``)."""
    return load(entry.wav)


def write_corpus(folder: Path) -> dict[str, dict]:
    """A manifest of 24 kHz wavs (resampled on load, as LibriTTS) in ``folder/wavs``, one per
    :data:`DURATIONS`: ``{"utt<i>": {"wav": path, "duration": seconds}}``."""
    rng = np.random.default_rng(0)
    data = {}
    for index, duration in enumerate(DURATIONS):
        path = folder / "wavs" / f"utt{index}.wav"
        path.parent.mkdir(exist_ok=True)
        sig = 0.1 * rng.standard_normal(round(duration * 24000)) * np.hanning(round(duration * 24000))
        sf.write(path, sig.astype(np.float32), 24000, subtype="PCM_16")
        data[f"utt{index}"] = {"wav": str(path), "duration": duration}
    return data


def build(encoder, data, folder, dtype="float32", config=None, **kwargs) -> FeatureCache:
    """:func:`build_feature_cache` of every utterance of ``data`` at 16 kHz, without a progress bar."""
    return build_feature_cache(
        encoder,
        manifest_entries(data),
        folder,
        load_entry,
        config=config if config is not None else TINY_ENCODER,
        sample_rate=16000,
        dtype=dtype,
        progress=False,
        **kwargs,
    )


class CallCounter:
    """Counts the encoder's forward calls (a hook: the state_dict, hence the key, is unchanged); raises
    ``KeyboardInterrupt`` at call number ``fail_at``; calls ``before()`` ahead of each forward."""

    def __init__(self, module: torch.nn.Module, fail_at: int | None = None, before=None) -> None:
        self.calls, self.fail_at, self.before = 0, fail_at, before
        self.handle = module.register_forward_pre_hook(self)

    def __call__(self, module, inputs) -> None:
        self.calls += 1
        if self.fail_at is not None and self.calls >= self.fail_at:
            raise KeyboardInterrupt("simulated interruption")
        if self.before is not None:
            self.before()

    def remove(self) -> None:
        self.handle.remove()


def reference_feats(encoder, wav: str) -> torch.Tensor:
    """(T, D) features of ``wav`` encoded alone, without the cache."""
    with torch.no_grad():
        return encoder(load(wav)[None])[0][0]


def cache_folders(output_folder: Path) -> dict[str, Path]:
    """stage -> cache folder of a recipe run's ``<output_folder>/feature_cache``."""
    folders = sorted((output_folder / "feature_cache").iterdir())
    return {folder.name.split("-")[0]: folder for folder in folders}
