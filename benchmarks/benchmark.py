#!/usr/bin/env python3
"""Speed of the recipe on whatever device is present: training steps with and without the feature cache,
and the codec's real-time factor.

    python -m benchmarks.benchmark                       # full size (several minutes on 2 CPU cores)
    python -m benchmarks.benchmark --json bench.json     # also write the figures as JSON
    python -m benchmarks.benchmark --quick               # tiny models, seconds: a smoke run

Measured in one run, each section in a fresh process (its own peak memory, no allocator carry-over):

* ``quantizer``: training steps of ``hparams/bsq.yaml`` (batch 16 of 4 s utterances) started as the script
  starts (``utils.training.recipe.setup_recipe`` on a corpus of the recipe's sample generator: 24 kHz wavs
  read and resampled, ``dataloader_workers: 0`` so loading is on the critical path) without the cache (the
  frozen encoder runs in every step) and with it (features read from a float16 cache, no audio read);
  throughput in seconds of audio per wall-clock second (see benchmarks/training.py).
* ``decoder``: training steps (discriminator + generator) of ``hparams/vocos.yaml`` (batch 16 of 5.8 s
  utterances, 22-frame crops), without and with the cache (whole-utterance features + the waveform).
* ``codec``: ``FocalCodec`` at full size (the released 50 Hz architecture, built from the recipe's YAML and
  release overrides, random weights) on 10 s of audio, batch 1: encode (waveform -> tokens), decode
  (tokens -> waveform) and resynthesis, in times real time (see benchmarks/codec_speed.py).
* ``loading``: the decoder stage's train loader with the cache, whole-utterance against crop-only reads
  (items/s), and the cached step of each (see benchmarks/loading.py).
* ``compile``: eager against ``torch.compile``d cached training steps of the decoder and quantizer stages
  (benchmarks/training.py).
* ``tokenization``: ``python -m focalcodec.cli encode`` of a corpus at batch 1 against batch N: files/s,
  audio-hours/hour, tokens compared (see benchmarks/tokenization.py).
* ``streaming``: the FocalCodec-Stream codec coded and decoded chunk by chunk (80 ms) on real speech: latency
  per chunk (p50 / p95 / max) and real-time factor, PyTorch eager vs TorchScript vs ONNX Runtime in float32
  and int8, the int8 model's quality cost, ONNX Runtime session options, and the streams served at once in
  real time (see benchmarks/streaming.py, benchmarks/streaming_sessions.py).
* ``scale``: the train loader reading WebDataset shards against the manifest of many small files
  (utterances/s), and quantizer training from shards with 1 against 2 processes (DDP on the CPU; see
  benchmarks/scale.py).

Uncached and cached steps are interleaved (one of each, repeatedly) so that drifting machine load hits both
alike; the figure is the median after warm-up steps. The encoder's share is the median time spent in its
forward (measured with hooks) over the median uncached step. Models have random weights (speed does not
depend on them). Peak memory (CPU: resident set; CUDA: ``torch.cuda.max_memory_allocated``) is the peak of
the whole section process for training (model, optimizer, both modes), and for the codec the peak during an
extra, untimed run of each operation (sampled every 2 ms, so as not to disturb the timed runs).
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.codec_speed import codec_section
from benchmarks.loading import loading_section
from benchmarks.report import markdown
from benchmarks.scale import scale_section
from benchmarks.streaming import streaming_section
from benchmarks.tokenization import tokenization_section
from benchmarks.training import compile_section, train_section

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ("quantizer", "decoder", "codec", "loading", "compile", "tokenization", "streaming", "scale")
# Options a section's process receives from the parent
FORWARDED = (
    "device",
    "threads",
    "batch_size",
    "warmup",
    "repeats",
    "codec_repeats",
    "cache_dtype",
    "stream_model",
)


# --------------------------------------------------------------------------------------------------
# Report


def parse_args(argv: list[str]) -> argparse.Namespace:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--quick", action="store_true", help="tiny models and inputs, few steps (smoke run)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda if available, else cpu)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: 2)")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated, of {SECTIONS}")
    parser.add_argument("--batch_size", type=int, help="training batch size (default: 16, quick 2)")
    parser.add_argument("--warmup", type=int, help="warm-up steps per measurement (default 2, quick 1)")
    parser.add_argument("--repeats", type=int, help="measured training steps per mode (default 5, quick 1)")
    parser.add_argument("--codec_repeats", type=int, help="measured codec runs (default 5, quick 1)")
    parser.add_argument("--cache_dtype", default="float16", choices=["float16", "float32"])
    parser.add_argument(
        "--stream_model",
        default="",
        help="streaming section: a causal checkpoint (folder or Hub id) instead of random weights",
    )
    parser.add_argument("--_section", help=argparse.SUPPRESS)
    parser.add_argument("--_out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.device is None:
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    args.batch_size = args.batch_size if args.batch_size is not None else (2 if args.quick else 16)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    args.repeats = args.repeats if args.repeats is not None else (1 if args.quick else 5)
    args.codec_repeats = args.codec_repeats if args.codec_repeats is not None else (1 if args.quick else 5)
    return args


def _section(name: str, args: argparse.Namespace, work: Path) -> dict:
    """The figures of one section (each runs in a process of its own)."""
    if name == "codec":
        return codec_section(args)
    if name == "loading":
        return loading_section(args, work)
    if name == "streaming":
        return streaming_section(args, work)
    if name == "scale":
        return scale_section(args, work)
    if name == "tokenization":
        return tokenization_section(args, work)
    if name == "compile":
        return {stage: compile_section(stage, args, work / stage) for stage in ("quantizer", "decoder")}
    return train_section(name, args, work)


def run_section(args: argparse.Namespace) -> None:
    """Child process: one section, figures to ``--_out``."""
    import logging

    import torch

    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix=f"bench_{args._section}_") as work:
        result = _section(args._section, args, Path(work))
    args._out.write_text(json.dumps(result))


def main(argv: list[str]) -> dict:
    args = parse_args(argv)
    if args._section:
        run_section(args)
        return {}
    import torch

    sections = [name.strip() for name in args.sections.split(",") if name.strip()]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise SystemExit(f"unknown sections: {sorted(unknown)} (choose from {SECTIONS})")
    cuda = args.device.startswith("cuda")
    processor = torch.cuda.get_device_name(args.device) if cuda else platform.processor()
    report: dict = {
        "environment": {
            "device": args.device,
            "processor": processor or platform.machine(),
            "cpu_count": os.cpu_count(),
            "threads": args.threads,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "quick": args.quick,
            "warmup": args.warmup,
            "repeats": args.repeats,
            "codec_repeats": args.codec_repeats,
            "cache_dtype": args.cache_dtype,
        }
    }
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONUNBUFFERED": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        for section in sections:
            print(f"== {section}", flush=True)
            out = Path(tmp) / f"{section}.json"
            command = [sys.executable, "-m", "benchmarks.benchmark", *(["--quick"] if args.quick else [])]
            for option in FORWARDED:
                command += [f"--{option}", str(getattr(args, option))]
            command += ["--_section", section, "--_out", str(out)]
            subprocess.run(command, check=True, env=env, cwd=ROOT)
            report[section] = json.loads(out.read_text())
    table = markdown(report)
    print()
    print(table)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
        print(f"JSON: {args.json}")
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
