#!/usr/bin/env python3
"""One prepared check of the recipe on a CUDA machine (about 5-8 minutes on one H100), one table at the end.

    python -m benchmarks.gpu_check                       # CUDA: full-size models
    python -m benchmarks.gpu_check --device cpu --quick  # the same checks with tiny models, on the CPU

Runs, through the real command lines, on a generated corpus (random encoder, nothing to download):

* the decoder and quantizer stages at full size, a few steps (12 utterances, batch 4) plus validation and
  the test stage, in fp32, bf16 and fp16 (fp16: CUDA only), without and with the feature cache: step time
  (median over the run's steps, device synchronised) and peak GPU memory;
* the export of the fp32 runs and ``python -m focalcodec.cli resynth`` of the test utterances on the device;
* ``python -m benchmarks.benchmark`` (training steps with/without cache, codec real-time factor, streaming
  latency in float32 and int8, streams served at once: on CUDA by PyTorch).

Exits with status 1 if any check fails (its output is kept in ``<work>/<check>.log``).
"""

import argparse
import atexit
import json
import runpy
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from utils.corpus.samples import make_sample_corpus
from utils.training.stages.decoder import DecoderStage
from utils.training.stages.quantizer import QuantizerStage

ROOT = Path(__file__).resolve().parent.parent
STAGES = {
    "quantizer": ("train_quantizer.py", "hparams/bsq.yaml"),
    "decoder": ("train_decoder.py", "hparams/vocos.yaml"),
}
SPLITS = {"train-clean-100": (2, 6), "dev-clean": (1, 2), "test-clean": (1, 2)}


def timed_main(script: str, out: Path, argv: list[str]) -> None:
    """Child process: run ``script`` as ``python script argv`` with its Brain's ``fit_batch`` timed (device
    synchronised)."""
    brain_class = {"train_quantizer.py": QuantizerStage, "train_decoder.py": DecoderStage}[script]
    steps: list[float] = []
    fit_batch = brain_class.fit_batch

    def timed_fit_batch(self, batch):
        cuda = torch.cuda.is_available() and str(self.device).startswith("cuda")
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        loss = fit_batch(self, batch)
        if cuda:
            torch.cuda.synchronize()
        steps.append(time.perf_counter() - start)
        return loss

    def report() -> None:
        peak = torch.cuda.max_memory_allocated() if torch.cuda.is_available() else 0
        out.write_text(json.dumps({"steps": steps, "peak_memory_bytes": peak}))

    brain_class.fit_batch = timed_fit_batch
    atexit.register(report)
    sys.argv = [script, *argv]
    runpy.run_path(str(ROOT / script), run_name="__main__")


def run(name: str, command: list[str], work: Path) -> dict:
    """Run one check; its output goes to ``<work>/<name>.log``."""
    start = time.perf_counter()
    with open(work / f"{name}.log", "w") as log:
        status = subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT).returncode
    result = {"check": name, "ok": status == 0, "wall_seconds": time.perf_counter() - start}
    print(f"{'PASS' if result['ok'] else 'FAIL'} {name} ({result['wall_seconds']:.0f} s)", flush=True)
    return result


def training_checks(args: argparse.Namespace, corpus: Path, work: Path) -> list[dict]:
    precisions = ["fp32", "bf16", "fp16"] if args.device.startswith("cuda") else ["fp32", "bf16"]
    if args.quick and not args.device.startswith("cuda"):
        precisions = ["fp32"]  # a smoke run of the check itself (bf16 on the CPU has its own test)
    results = []
    for stage, (script, hparams) in STAGES.items():
        for precision in precisions:
            for cache in (False, True):
                name = f"{stage}-{precision}{'-cache' if cache else ''}"
                stats = work / f"{name}.json"
                argv = [hparams, "--data_folder", str(corpus), "--output_folder", str(work / name)]
                argv += ["--device", args.device, "--precision", precision, "--feature_cache", str(cache)]
                argv += ["--encoder_random_init", "True", "--compute_metrics", "False", "--num_epochs", "1"]
                argv += ["--train_batch_size", "4", "--valid_size", "2", "--train_split", "[train-clean-100]"]
                if args.quick:
                    argv += ["--overrides_file", f"hparams/tiny/{Path(hparams).name}"]
                command = [
                    sys.executable,
                    "-m",
                    "benchmarks.gpu_check",
                    "--_timed",
                    script,
                    str(stats),
                    "--",
                    *argv,
                ]
                result = run(name, command, work)
                if result["ok"] and stats.is_file():
                    figures = json.loads(stats.read_text())
                    result["step_seconds"] = statistics.median(figures["steps"]) if figures["steps"] else None
                    result["peak_memory_bytes"] = figures["peak_memory_bytes"]
                results.append(result)
    return results


def inference_checks(args: argparse.Namespace, corpus: Path, work: Path) -> list[dict]:
    codec = work / "codec"
    export = [sys.executable, "export_codec.py", "--quantizer", str(work / "quantizer-fp32")]
    export += ["--decoder", str(work / "decoder-fp32"), "--output", str(codec), "--allow_random_encoder"]
    resynth = [
        sys.executable,
        "-m",
        "focalcodec.cli",
        "resynth",
        str(corpus / "test-clean"),
        "--model",
        str(codec),
    ]
    resynth += ["--output", str(work / "resynth"), "--device", args.device]
    benchmark = [
        sys.executable,
        "-m",
        "benchmarks.benchmark",
        "--device",
        args.device,
        "--json",
        str(work / "bench.json"),
    ]
    benchmark += ["--quick"] if args.quick else ["--repeats", "3"]
    return [run("export", export, work), run("cli-resynth", resynth, work), run("benchmark", benchmark, work)]


def table(results: list[dict], device: str) -> str:
    lines = [f"GPU check on `{device}`", "", "| check | result | median step | peak GPU memory | wall |"]
    lines.append("|---|---|---|---|---|")
    for result in results:
        step = result.get("step_seconds")
        memory = result.get("peak_memory_bytes")
        lines.append(
            f"| {result['check']} | {'pass' if result['ok'] else '**FAIL**'} "
            f"| {'—' if step is None else f'{step:.3f} s'} "
            f"| {'—' if not memory else f'{memory / 2**30:.2f} GiB'} | {result['wall_seconds']:.0f} s |"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if argv[:1] == ["--_timed"]:
        timed_main(argv[1], Path(argv[2]), argv[4:])
        return 0
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:1, ... or cpu")
    parser.add_argument("--quick", action="store_true", help="tiny models (a smoke run of the check itself)")
    parser.add_argument("--work", type=Path, help="keep runs and logs here (default: a temporary folder)")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("error: no CUDA device (use --device cpu --quick to try the check itself)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        corpus = make_sample_corpus(work / "corpus", splits=SPLITS, engine="synthetic")
        results = training_checks(args, corpus, work) + inference_checks(args, corpus, work)
        print()
        print(
            table(
                results, torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "cpu"
            )
        )
    return 0 if all(result["ok"] for result in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
