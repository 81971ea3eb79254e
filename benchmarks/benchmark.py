#!/usr/bin/env python3
"""Speed of the recipe on whatever device is present: training steps with and without the feature cache,
and the codec's real-time factor.

    python benchmarks/benchmark.py                       # full size (several minutes on 2 CPU cores)
    python benchmarks/benchmark.py --json bench.json     # also write the figures as JSON
    python benchmarks/benchmark.py --quick               # tiny models, seconds: a smoke run

Measured in one run, each section in a fresh process (its own peak memory, no allocator carry-over):

* ``quantizer``: training steps of ``hparams/bsq.yaml`` (batch 16 of 4 s utterances) through the real
  data pipeline (24 kHz wavs read and resampled, ``dataloader_workers: 0`` so loading is on the critical
  path) without the cache (the frozen encoder runs in every step) and with it (features read from a
  float16 cache, no audio read); throughput in seconds of audio per wall-clock second.
* ``decoder``: training steps (discriminator + generator) of ``hparams/vocos.yaml`` (batch 16 of 5.8 s
  utterances, 22-frame crops), without and with the cache (whole-utterance features + the waveform).
* ``codec``: ``FocalCodec`` at full size (the 50 Hz configuration, random weights) on 10 s of audio,
  batch 1: encode (waveform -> tokens), decode (tokens -> waveform) and resynthesis, in times real time.

Uncached and cached steps are interleaved (one of each, repeatedly) so that drifting machine load hits both
alike; the figure is the median after warm-up steps. The encoder's share is the median time spent in its
forward (measured with hooks) over the median uncached step. Models have random weights (speed does not
depend on them). Peak memory (CPU: resident set; CUDA: ``torch.cuda.max_memory_allocated``) is the peak of
the whole section process for training (model, optimizer, both modes), and for the codec the peak during an
extra, untimed run of each operation (sampled every 2 ms, so as not to disturb the timed runs).
"""

import argparse
import ast
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SECTIONS = ("quantizer", "decoder", "codec")
# Options a section's process receives from the parent
FORWARDED = ("device", "threads", "batch_size", "warmup", "repeats", "codec_repeats", "cache_dtype")
CODEC_LISTING = ROOT / "tests" / "data" / "state_dict" / "FocalCodec_50hz.txt"


# --------------------------------------------------------------------------------------------------
# Measuring


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def process_peak_memory(device: str) -> int:
    """Peak resident set of this process so far (CPU), or peak CUDA allocation since the last reset."""
    import torch

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated()
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


class PeakMemory:
    """Peak resident memory (CPU, sampled every 2 ms from /proc) or CUDA allocation inside a ``with``."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.peak = 0

    @staticmethod
    def _rss() -> int:
        try:
            with open("/proc/self/statm") as stream:
                return int(stream.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:  # not Linux: the process's peak so far
            return process_peak_memory("cpu")

    def _sample(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(0.002)

    def __enter__(self) -> "PeakMemory":
        import torch

        if self.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
            return self
        self.peak = self._rss()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        import torch

        if self.device.startswith("cuda"):
            self.peak = torch.cuda.max_memory_allocated()
            return
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())


class ForwardTimer:
    """Wall time spent in a module's forward calls (hooks), reset before each step."""

    def __init__(self, module, device: str) -> None:
        self.device, self.total, self._start = device, 0.0, 0.0
        module.register_forward_pre_hook(self._pre)
        module.register_forward_hook(self._post)

    def _pre(self, module, inputs) -> None:
        _sync(self.device)
        self._start = time.perf_counter()

    def _post(self, module, inputs, output) -> None:
        _sync(self.device)
        self.total += time.perf_counter() - self._start


def interleaved(steps: dict[str, Callable[[], dict]], warmup: int, repeats: int) -> dict[str, list[dict]]:
    """Run the step functions in turn ``warmup + repeats`` times; keep the records after warm-up."""
    records: dict[str, list[dict]] = {name: [] for name in steps}
    for index in range(warmup + repeats):
        for name, step in steps.items():
            record = step()
            if index >= warmup:
                records[name].append(record)
            print(f"  {name} step {index + 1}/{warmup + repeats}: {record['step_seconds']:.3f} s", flush=True)
    return records


def _median(records: list[dict], key: str) -> float:
    return statistics.median(record[key] for record in records)


# --------------------------------------------------------------------------------------------------
# Training sections


def _write_corpus(folder: Path, count: int, seconds: float, rate: int = 24000) -> Path:
    """``count`` wavs of noise under a speech-like envelope (24 kHz like LibriTTS) and their manifest."""
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    manifest = {}
    samples = round(seconds * rate)
    envelope = 0.5 + 0.5 * np.sin(np.linspace(0, 8 * np.pi * seconds, samples)) ** 2
    for index in range(count):
        path = folder / f"utt{index:04d}.wav"
        sf.write(path, (0.1 * rng.standard_normal(samples) * envelope).astype(np.float32), rate)
        manifest[f"utt{index:04d}"] = {"wav": str(path), "duration": seconds}
    manifest_file = folder / "manifest.json"
    manifest_file.write_text(json.dumps(manifest))
    return manifest_file


def _load_hparams(name: str, overrides: dict, quick: bool) -> dict:
    import yaml
    from hyperpyyaml import load_hyperpyyaml

    if quick:
        tiny = yaml.safe_load((ROOT / "hparams" / "tiny" / name).read_text())
        overrides = {**tiny, **overrides}
    with open(ROOT / "hparams" / name) as stream:
        return load_hyperpyyaml(stream, overrides)


def train_section(stage: str, args: argparse.Namespace, work: Path) -> dict:
    """Median training step with and without the feature cache, interleaved (files go to ``work``)."""
    import speechbrain as sb
    import torch
    from speechbrain.dataio.dataloader import make_dataloader

    from focalcodec.audio import load_audio
    from utils.data import add_cached_features, dataio_prepare, loader_kwargs
    from utils.feature_cache import build_feature_cache, encoder_config, manifest_entries

    if stage == "quantizer":
        from train_quantizer import Quantization

        brain_class, yaml_name, seconds = Quantization, "bsq.yaml", (1.0 if args.quick else 4.0)
    else:
        from train_decoder import Resynthesis

        brain_class, yaml_name, seconds = Resynthesis, "vocos.yaml", (1.0 if args.quick else 5.8)
    batch_size = 2 if args.quick else args.batch_size
    manifest = _write_corpus(work / "corpus", 2 * batch_size, seconds)
    overrides = {
        "data_folder": str(work / "corpus"),
        "output_folder": str(work / "out"),
        "train_json": str(manifest),
        "valid_json": str(manifest),
        "test_json": str(manifest),
        "encoder_random_init": True,
        "dataloader_workers": 0,
        "train_batch_size": batch_size,
    }
    hparams = _load_hparams(yaml_name, overrides, args.quick)
    uncached = dataio_prepare(hparams)["train"]
    cached = dataio_prepare(hparams)["train"]

    encoder = hparams["encoder"].requires_grad_(False).eval()
    start = time.perf_counter()
    cache = build_feature_cache(
        encoder,
        manifest_entries(cached.data, cached.data_ids),
        work / "feature_cache",
        lambda path: load_audio(path, hparams["sample_rate"]),
        config=encoder_config(hparams),
        sample_rate=hparams["sample_rate"],
        dtype=args.cache_dtype,
        device=args.device,
        progress=False,
    )
    build_seconds = time.perf_counter() - start
    # The quantizer stage trains on features alone; the decoder stage needs the waveform (its target)
    add_cached_features(cached, cache, audio=stage == "decoder")

    brain = brain_class(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts={"device": args.device},
        checkpointer=None,
    )
    brain.on_fit_start()
    brain.on_stage_start(sb.Stage.TRAIN, 1)
    timer = ForwardTimer(encoder, args.device)

    def forever(dataset) -> Iterator:
        loader = make_dataloader(dataset, **loader_kwargs(hparams, "train", dataset, args.device))
        while True:
            yield from loader

    def step_function(dataset) -> Callable[[], dict]:
        batches = forever(dataset)

        def step() -> dict:
            _sync(args.device)
            start = time.perf_counter()
            batch = next(batches)
            loaded = time.perf_counter()
            timer.total = 0.0
            loss = brain.fit_batch(batch)
            _sync(args.device)
            end = time.perf_counter()
            if not torch.isfinite(loss):
                raise RuntimeError(f"{stage}: non-finite loss in the benchmark")
            return {
                "step_seconds": end - start,
                "load_seconds": loaded - start,
                "encoder_seconds": timer.total,
            }

        return step

    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    records = interleaved(
        {"uncached": step_function(uncached), "cached": step_function(cached)}, args.warmup, args.repeats
    )
    result: dict = {"batch_size": batch_size, "utterance_seconds": seconds}
    for mode, mode_records in records.items():
        step_seconds = _median(mode_records, "step_seconds")
        result[mode] = {
            "step_seconds": step_seconds,
            "load_seconds": _median(mode_records, "load_seconds"),
            "encoder_seconds": _median(mode_records, "encoder_seconds"),
            "audio_seconds_per_second": batch_size * seconds / step_seconds,
            "steps": [record["step_seconds"] for record in mode_records],
        }
    result["speedup"] = result["uncached"]["step_seconds"] / result["cached"]["step_seconds"]
    result["encoder_share"] = result["uncached"]["encoder_seconds"] / result["uncached"]["step_seconds"]
    result["cache_build"] = {
        "seconds": build_seconds,
        "audio_seconds": len(cache) * seconds,
        "bytes": sum(path.stat().st_size for path in cache.folder.glob("shard-*.bin")),
        "dtype": args.cache_dtype,
    }
    result["peak_memory_bytes"] = process_peak_memory(args.device)
    return result


# --------------------------------------------------------------------------------------------------
# Codec section


def codec_config(quick: bool) -> dict:
    """The released 50 Hz configuration (from the state-dict listing), or a tiny one with ``quick``."""
    for line in CODEC_LISTING.read_text().splitlines():
        if line.startswith("# constructor kwargs:"):
            config = ast.literal_eval(line.split(":", 1)[1].strip())
            break
    else:
        raise RuntimeError(f"no constructor kwargs in {CODEC_LISTING}")
    if quick:
        config["encoder_config"].update(
            hidden_dims=[32] * 7,
            num_layers=2,
            dim=64,
            ffn_dim=128,
            num_heads=4,
            conv_pos=16,
            conv_pos_groups=4,
        )
        config["compressor_config"].update(input_dim=64, hidden_dims=[48, 32, 16])
        config["decompressor_config"].update(output_dim=64, hidden_dims=[16, 32, 48])
        config["decoder_config"].update(input_dim=64, num_layers=2, dim=32, ffn_dim=64)
    return config


def codec_section(args: argparse.Namespace) -> dict:
    """Encode, decode and resynthesis time of one 10 s utterance, median over repeats."""
    import torch

    from focalcodec.codec import FocalCodec

    torch.manual_seed(0)
    model = FocalCodec(**codec_config(args.quick)).eval().to(args.device)
    seconds = 2.0 if args.quick else 10.0
    sig = 0.1 * torch.randn(1, round(seconds * 16000), device=args.device)
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
        times = []
        with torch.inference_mode():
            for index in range(args.warmup + args.codec_repeats):
                _sync(args.device)
                start = time.perf_counter()
                operation()
                _sync(args.device)
                if index >= args.warmup:
                    times.append(time.perf_counter() - start)
            # Memory in a separate run: the sampling thread would disturb the timed ones
            with PeakMemory(args.device) as memory:
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


# --------------------------------------------------------------------------------------------------
# Report


def _bytes(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"


def markdown(report: dict) -> str:
    env = report["environment"]
    memory = "peak GPU memory" if env["device"].startswith("cuda") else "peak RSS"
    lines = [
        f"Device `{env['device']}` ({env['processor']}), {env['threads']} threads, torch {env['torch']}"
        + (" — QUICK (tiny models, not representative)" if env["quick"] else ""),
        "",
    ]
    stages = [stage for stage in ("quantizer", "decoder") if stage in report]
    if stages:
        lines += [
            "| training step | uncached | cached | speed-up | encoder share (uncached) "
            f"| audio s / wall s: uncached → cached | cache build | {memory} |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for stage in stages:
            figures = report[stage]
            build = figures["cache_build"]
            label = f"{stage} ({figures['batch_size']} × {figures['utterance_seconds']:g} s"
            label += ", 22-frame crops)" if stage == "decoder" else ")"
            lines.append(
                f"| {label} | {figures['uncached']['step_seconds']:.2f} s "
                f"| {figures['cached']['step_seconds']:.2f} s | **{figures['speedup']:.2f}×** "
                f"| {100 * figures['encoder_share']:.0f} % "
                f"| {figures['uncached']['audio_seconds_per_second']:.1f} → "
                f"{figures['cached']['audio_seconds_per_second']:.1f} "
                f"| {build['audio_seconds'] / build['seconds']:.1f}× real time ({build['dtype']}, "
                f"{_bytes(build['bytes'] / build['audio_seconds'])} per s of audio) "
                f"| {_bytes(figures['peak_memory_bytes'])} |"
            )
        lines.append("")
    if "codec" in report:
        codec = report["codec"]
        lines += [
            f"| codec, {codec['input_seconds']:g} s of audio, batch 1 ({codec['num_parameters'] / 1e6:.3g} M "
            f"parameters) | time | × real time | {memory} |",
            "|---|---|---|---|",
        ]
        for name in ("encode", "decode", "resynthesis"):
            op = codec[name]
            lines.append(
                f"| {name} | {op['seconds']:.3f} s | **{op['realtime_factor']:.1f}×** "
                f"| {_bytes(op['peak_memory_bytes'])} |"
            )
        lines.append("")
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--quick", action="store_true", help="tiny models and inputs, few steps (smoke run)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda if available, else cpu)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: 2)")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated, of {SECTIONS}")
    parser.add_argument("--batch_size", type=int, default=16, help="training batch size (default: 16)")
    parser.add_argument("--warmup", type=int, help="warm-up steps per measurement (default 2, quick 1)")
    parser.add_argument("--repeats", type=int, help="measured training steps per mode (default 5, quick 1)")
    parser.add_argument("--codec_repeats", type=int, help="measured codec runs (default 5, quick 1)")
    parser.add_argument("--cache_dtype", default="float16", choices=["float16", "float32"])
    parser.add_argument("--_section", help=argparse.SUPPRESS)
    parser.add_argument("--_out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.device is None:
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    args.repeats = args.repeats if args.repeats is not None else (1 if args.quick else 5)
    args.codec_repeats = args.codec_repeats if args.codec_repeats is not None else (1 if args.quick else 5)
    return args


def run_section(args: argparse.Namespace) -> None:
    """Child process: one section, figures to ``--_out``."""
    import logging

    import torch

    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory(prefix=f"bench_{args._section}_") as work:
        if args._section == "codec":
            result = codec_section(args)
        else:
            result = train_section(args._section, args, Path(work))
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
            command = [sys.executable, __file__, *(["--quick"] if args.quick else [])]
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
