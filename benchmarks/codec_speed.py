"""Real-time factor of the whole codec (encode, decode, resynthesis) on one utterance, batch 1.

The codec is the one the recipe exports: its parts are built from ``hparams/bsq.yaml`` with the release
overrides (the released 50 Hz architecture, ``hparams/release/bsq.yaml``; the tiny settings with
``--quick``), with random weights (speed does not depend on them).
"""

import statistics
import time

import torch
from hyperpyyaml import load_hyperpyyaml

from benchmarks.measure import PeakMemory, sync
from focalcodec.codec import FocalCodec
from utils.runs import part_of
from utils.training.recipe import read_overrides

__all__ = ["codec_config", "codec_section"]

PARTS = ("encoder", "compressor", "quantizer", "decompressor", "decoder")


def codec_config(quick: bool, stream: bool = False) -> dict:
    """The ten ``FocalCodec`` arguments of a recipe YAML: the quantizer stage's (release overrides), or with
    ``stream`` the FocalCodec-Stream joint stage's (its student encoder with the released 2048-frame cache,
    4096 codes); the tiny settings with ``quick``."""
    yaml_file, tiny, release = "bsq.yaml", "hparams/tiny/bsq.yaml", "hparams/release/bsq.yaml"
    names = dict.fromkeys(PARTS)
    if stream:
        yaml_file, tiny, release = "stream/joint.yaml", "hparams/tiny/stream/joint.yaml", None
        names["encoder"] = "student_encoder"
    overrides = "data_folder: unused\nencoder_random_init: true\n"
    overrides += "quantizer_checkpoint: unused\nstudent_encoder_max_cached_steps: 2048\n" if stream else ""
    overrides_file = tiny if quick else release
    with open(f"hparams/{yaml_file}") as stream_file:
        hparams = load_hyperpyyaml(
            stream_file,
            read_overrides(overrides + (f"overrides_file: {overrides_file}" if overrides_file else "")),
        )
    config = {}
    for name in PARTS:
        part = part_of(hparams[names[name] or name])
        config[f"{name}_name"], config[f"{name}_config"] = part.name, part.config
    return config


def _time(operation, device: str, warmup: int, repeats: int) -> list[float]:
    times = []
    with torch.inference_mode():
        for index in range(warmup + repeats):
            sync(device)
            start = time.perf_counter()
            operation()
            sync(device)
            if index >= warmup:
                times.append(time.perf_counter() - start)
    return times


def codec_section(args) -> dict:
    """Encode, decode and resynthesis time of one utterance (10 s; 2 s with ``--quick``), median of runs."""
    torch.manual_seed(0)
    model = FocalCodec(**codec_config(args.quick)).eval().to(args.device)
    seconds = 2.0 if args.quick else 10.0
    sig = 0.1 * torch.randn(1, round(seconds * model.sample_rate_input), device=args.device)
    with torch.inference_mode():
        toks = model.sig_to_toks(sig)
    operations = {
        "encode": lambda: model.sig_to_toks(sig),
        "decode": lambda: model.toks_to_sig(toks, output_length=sig.shape[-1]),
        "resynthesis": lambda: model(sig),
    }
    result: dict = {
        "input_seconds": seconds,
        "batch_size": 1,
        "num_parameters": sum(p.numel() for p in model.parameters()),
    }
    for name, operation in operations.items():
        times = _time(operation, args.device, args.warmup, args.codec_repeats)
        with (
            torch.inference_mode(),
            PeakMemory(args.device) as memory,
        ):  # apart: sampling would disturb timing
            operation()
        median = statistics.median(times)
        result[name] = {
            "seconds": median,
            "realtime_factor": seconds / median,
            "peak_memory_bytes": memory.peak,
            "runs": times,
        }
        print(f"  codec {name}: {median:.3f} s for {seconds:g} s ({seconds / median:.1f}x real time)")
    return result
