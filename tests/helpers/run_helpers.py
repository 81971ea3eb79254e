"""Helpers for the tests of what reads training runs (export, fine-tuning, the run folder itself)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import soundfile as sf
import torch
import yaml

from focalcodec.codec import FocalCodec
from helpers.recipe_runner import ROOT, fixed_batch_steps, load_hparams, padded_batch, recipe_env

TINY_BSQ = yaml.safe_load((ROOT / "hparams" / "tiny" / "bsq.yaml").read_text())
TINY_VOCOS = yaml.safe_load((ROOT / "hparams" / "tiny" / "vocos.yaml").read_text())
SPEECH = ROOT / "tests" / "data" / "real-speech" / "84-121123-0007.wav"  # 2 s at 16 kHz


def export(*args) -> subprocess.CompletedProcess:
    """``python export_codec.py ARGS`` as a user runs it."""
    return subprocess.run(
        [sys.executable, str(ROOT / "export_codec.py"), *map(str, args)],
        cwd=ROOT, env=recipe_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def recipe_modules(yaml_file: str, tiny: dict, tmp_path: Path) -> dict:
    """The YAML's modules as training built them (same seed, same overrides), e.g. its random encoder."""
    overrides = {**tiny, "train_batch_size": 2, "valid_size": 2, "num_epochs": 1}
    return load_hparams(yaml_file, {**overrides, "output_folder": str(tmp_path / yaml_file)})


def load_checkpoint(module: torch.nn.Module, file: Path) -> None:
    module.load_state_dict(torch.load(file, map_location="cpu"), strict=True)


def speech() -> torch.Tensor:
    """(1, 32000) real speech at 16 kHz."""
    sig, rate = sf.read(str(SPEECH), dtype="float32")
    assert rate == 16000
    return torch.from_numpy(sig)[None]


def assert_same_weights(module: torch.nn.Module, reference: torch.nn.Module | dict) -> None:
    """Bit-identical state_dicts (same keys)."""
    expected = reference if isinstance(reference, dict) else reference.state_dict()
    state = module.state_dict()
    assert state.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(state[key], value), key


def tiny_official(tmp_path: Path, **changes) -> tuple[FocalCodec, Path]:
    """An official-format folder of a random codec with the tiny recipe settings (+ ``changes``)."""
    return official_codec(tmp_path, "bsq.yaml", {**TINY_BSQ, **changes})


def official_codec(
    tmp_path: Path, yaml_file: str, overrides: dict, encoder: str = "encoder"
) -> tuple[FocalCodec, Path]:
    """An official-format folder (``tmp_path/official``) of a random codec (seed 1) whose parts have the
    settings of the YAML's modules: ``encoder`` names the module that gives its encoder (e.g.
    ``student_encoder``, a causal one)."""
    hparams = recipe_modules(yaml_file, overrides, tmp_path / "build")
    names = {
        "encoder": encoder,
        "compressor": "compressor",
        "decompressor": "decompressor",
        "decoder": "decoder",
    }
    config = {}
    for part, key in names.items():
        config[f"{part}_name"] = type(hparams[key]).__name__
        config[f"{part}_config"] = hparams[key].config
    config.update(
        quantizer_name="BinarySphericalQuantizer",
        quantizer_config={"codebook_size": 2 ** hparams["quantizer_code_dim"]},
    )
    torch.manual_seed(1)
    codec = FocalCodec(**config)
    return codec, codec.to_pretrained(tmp_path / "official")


def copy_run(run: Path, destination: Path, changes: dict | None = None, keep_yaml: bool = True) -> Path:
    """A copy of a run (checkpoints linked) whose ``parts.json`` has some values changed: ``changes`` maps a
    dotted path (``parts.encoder.config.dim``) to its new value; ``keep_yaml=False`` leaves out the YAML."""
    destination.mkdir(parents=True)
    (destination / "save").symlink_to(run / "save")
    for name in ("parts.json", "encoder.safetensors", *(["hyperparams.yaml"] if keep_yaml else [])):
        if (run / name).exists():
            shutil.copy(run / name, destination / name)
    record = json.loads((destination / "parts.json").read_text())
    for path, value in (changes or {}).items():
        node, *keys = record, *path.split(".")
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value
    (destination / "parts.json").write_text(json.dumps(record))
    return destination


def quantizer_steps_on_speech(brain, frozen: tuple[str, ...] = ("encoder", "decoder")) -> None:
    """A quantizer-stage Brain (or the joint stage's) trained 8 steps on a fixed batch of real speech: the
    feature loss falls; then it resynthesizes a validation batch through its decoder. The ``frozen``
    modules stay bit-identical throughout."""
    import speechbrain as sb

    before = {
        name: {k: v.clone() for k, v in getattr(brain.hparams, name).state_dict().items()} for name in frozen
    }
    sig = speech()[0]
    losses = [
        step["rec_loss"] for step in fixed_batch_steps(brain, padded_batch(sig[:16000], sig[16000:28000]), 8)
    ]
    assert losses[-1] < 0.8 * losses[0], losses
    brain.on_stage_start(sb.Stage.VALID, 1)
    assert torch.isfinite(brain.evaluate_batch(padded_batch(sig), sb.Stage.VALID))
    for name, state in before.items():
        for key, value in getattr(brain.hparams, name).state_dict().items():
            assert torch.equal(value, state[key]), (name, key)
