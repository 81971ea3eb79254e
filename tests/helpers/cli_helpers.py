"""Shared by the command-line tests: tiny codecs written in the official format, speech-like audio, and
running ``focalcodec.cli`` in-process."""

import copy
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from focalcodec import cli
from focalcodec.codec import FocalCodec
from helpers.reference import TINY_ENCODER, load_reference

REAL_SPEECH = Path(__file__).resolve().parents[1] / "data" / "real-speech"
REAL_CLIPS = ("84-121123-0007.wav", "84-121123-0000.flac")  # 2.00 s each, 16 kHz mono

TINY_CONFIG = {
    "encoder_name": "WavLM",
    "encoder_config": TINY_ENCODER,
    "compressor_name": "FocalEncoder",
    "compressor_config": {
        "input_dim": 64,
        "output_dim": 13,
        "hidden_dims": [48, 32, 16],
        "focal_window": 7,
        "focal_factor": 2,
    },
    "quantizer_name": "BinarySphericalQuantizer",
    "quantizer_config": {"codebook_size": 8192},
    "decompressor_name": "FocalDecoder",
    "decompressor_config": {
        "input_dim": 13,
        "output_dim": 64,
        "hidden_dims": [16, 32, 48],
        "focal_window": 7,
        "focal_factor": 2,
    },
    "decoder_name": "Vocos",
    "decoder_config": {"input_dim": 64, "num_layers": 2, "dim": 32, "ffn_dim": 64},
}
"""A tiny non-causal 50 Hz codec (16 kHz in and out)."""


def causal_config() -> dict:
    """A tiny causal codec: the streaming vector's (80 ms chunks, lookahead 3, WaveNeXt at 24 kHz)."""
    return copy.deepcopy(load_reference("focalcodec_stream_e2e")["config"])


def write_model(config: dict, folder: Path, seed: int = 0) -> Path:
    """A randomly initialised codec saved in the official format; returns its folder."""
    torch.manual_seed(seed)
    return FocalCodec(**config).to_pretrained(folder)


def speech(seconds: float, rate: int, seed: int) -> np.ndarray:
    """A voiced-speech-like signal: a gliding harmonic tone with a syllable envelope."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * rate)) / rate
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / rate
    tone = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2
    return (0.2 * tone * envelope + 0.005 * rng.standard_normal(t.shape)).astype(np.float32)


def expected_signal(path: Path) -> torch.Tensor:
    """What the tool should feed the codec: mono (channel mean) at 16 kHz."""
    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    sig = torch.from_numpy(data).mean(dim=1)
    return AF.resample(sig, rate, 16000) if rate != 16000 else sig


def run_cli(capsys, *args) -> tuple[int, str]:
    """``main`` in-process; returns the exit status and stdout."""
    status = cli.main([str(arg) for arg in args])
    return status, capsys.readouterr().out


def token_files(folder: Path) -> dict[str, dict]:
    """The token files below ``folder`` by relative path."""
    return {
        str(path.relative_to(folder)): torch.load(path, weights_only=True)
        for path in sorted(folder.rglob("*.toks.pt"))
    }


def wav_files(folder: Path) -> dict[str, np.ndarray]:
    """The wavs below ``folder`` by relative path, as float32 arrays."""
    return {
        str(path.relative_to(folder)): sf.read(str(path), dtype="float32")[0]
        for path in sorted(folder.rglob("*.wav"))
    }
