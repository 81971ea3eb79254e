"""Streaming speed of a causal FocalCodec, and what int8 weights cost: per-chunk latency (p50 / p95 / max)
and real-time factor of resynthesis (encode and decode) at the model's chunk (80 ms), PyTorch eager vs
TorchScript (``FocalCodec.jit``) vs ONNX Runtime (``FocalCodec.onnx(return_state=True)``) in float32 and
with int8 weights (``quantize="int8"``), in one run; ONNX Runtime session options; and the streams one
machine serves in real time (``benchmarks/streaming_sessions.py``).

The codec is the one the FocalCodec-Stream recipe exports (built from its joint-stage YAML, see
``benchmarks.codec_speed.codec_config``) with random weights (speed does not depend on them), or the
``--stream_model`` checkpoint. Every runtime streams the same real speech (the first 10 s of
``tests/data/real-speech``; 2 s with ``--quick``), one chunk per call, after a warm-up stream of its own;
each runtime's tokens are compared with eager's, and the int8 model's audio with eager's
(``benchmarks/streaming_quality.py``).
"""

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from benchmarks.codec_speed import codec_config
from benchmarks.measure import sync
from benchmarks.streaming_quality import quality_cost, real_speech
from benchmarks.streaming_sessions import onnx_session, sessions_figures
from focalcodec.cli.streaming import Latencies
from focalcodec.codec import FocalCodec
from focalcodec.streaming import CodecStream

__all__ = ["streaming_section"]

WARMUP_CHUNKS = 5
OPTION_ROUNDS = 3


def _stream(make_stream: Callable, chunks: list, device: str) -> tuple[list[float], np.ndarray, np.ndarray]:
    """Latency of every chunk of one fresh stream (after a warm-up stream), its tokens and its audio."""
    warm = make_stream()
    for chunk in chunks[:WARMUP_CHUNKS]:
        warm.push(chunk)
    stream, seconds, toks, audio = make_stream(), [], [], []
    for chunk in chunks:
        start = time.perf_counter()
        output = stream.push(chunk)
        sync(device)
        seconds.append(time.perf_counter() - start)
        toks.append(np.asarray(output[0].cpu() if isinstance(output[0], torch.Tensor) else output[0]))
        audio.append(np.asarray(output[2].cpu() if isinstance(output[2], torch.Tensor) else output[2]))
    return seconds, np.concatenate(toks, axis=1)[0], np.concatenate(audio, axis=1)[0]


def export_stream_models(model: FocalCodec, work: Path) -> dict[str, Path]:
    """The stream model in float32 and int8 (dynamic batch axis: also what the sessions section serves)."""
    paths = {}
    for name, quantize in (("onnxruntime", None), ("onnxruntime-int8", "int8")):
        start = time.perf_counter()
        paths[name] = model.onnx(work / f"{name}.onnx", return_state=True, quantize=quantize)
        print(f"  ONNX export ({name}): {time.perf_counter() - start:.0f} s", flush=True)
    return paths


def _runtimes(model: FocalCodec, onnx_paths: dict[str, Path], threads: int) -> dict[str, Callable]:
    """Stream factories: eager, TorchScript and the ONNX models (each session made at its runtime's first
    stream and dropped after it: idle ONNX Runtime threads spin, which would slow the other runs)."""
    scripted = model.jit()
    runtimes: dict[str, Callable] = {
        "eager": lambda: CodecStream(model),
        "torchscript": lambda: CodecStream(scripted),
    }
    sessions: dict = {}
    for name, path in onnx_paths.items():

        def onnx_stream(name=name, path=path):
            if name not in sessions:
                sessions.clear()
                sessions[name] = onnx_session(path, threads)
            return sessions[name].stream()

        runtimes[name] = onnx_stream
    return runtimes


def measure_runtimes(model: FocalCodec, sig: torch.Tensor, device: str, runtimes: dict) -> dict:
    """Per-chunk latencies, real-time factor and tokens of every runtime on ``sig`` (1, N); the int8
    model's quality cost against eager."""
    chunk_seconds = model.chunk_size / model.sample_rate_input
    audio_seconds = sig.shape[1] / model.sample_rate_input
    figures, reference = {}, None
    for name, make_stream in runtimes.items():
        pieces = sig.to(device) if not name.startswith("onnxruntime") else sig.numpy()
        chunks = [
            pieces[:, start : start + model.chunk_size] for start in range(0, sig.shape[1], model.chunk_size)
        ]
        seconds, toks, audio = _stream(make_stream, chunks, device)
        latencies = Latencies(chunk_seconds, seconds, audio_seconds)
        reference = (toks, audio) if reference is None else reference
        figures[name] = {
            "p50_ms": 1000 * latencies.percentile(50),
            "p95_ms": 1000 * latencies.percentile(95),
            "max_ms": 1000 * latencies.percentile(100),
            "real_time_factor": latencies.real_time_factor,
            "tokens_equal_to_eager": float(np.mean(toks == reference[0])),
        }
        if name.endswith("int8"):
            figures[name]["quality"] = quality_cost(toks, audio, *reference, model.sample_rate_output)
        print(
            f"  {name}: p50 {figures[name]['p50_ms']:.1f} ms, p95 {figures[name]['p95_ms']:.1f} ms",
            flush=True,
        )
    return figures


def measure_onnx_options(path: Path, sig: np.ndarray, chunk_size: int, threads: int) -> dict:
    """Median step of the int8 stream model under session options, interleaved in rounds: the default
    (every graph optimisation, ``threads`` intra-op threads), basic optimisations only, and 1 thread."""
    import onnxruntime

    variants = {
        f"all optimisations, {threads} threads": {},
        f"basic optimisations, {threads} threads": {
            "graph_optimization_level": onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
        },
        "all optimisations, 1 thread": {"intra_op_num_threads": 1},
    }
    chunks = [
        sig[:, start : start + chunk_size] for start in range(0, sig.shape[1] - chunk_size + 1, chunk_size)
    ]
    per_round = max(1, (len(chunks) - WARMUP_CHUNKS) // OPTION_ROUNDS)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for round_index in range(OPTION_ROUNDS):
        for name, options in variants.items():
            codec = onnx_session(path, threads, **options)
            state = None
            for chunk in chunks[:WARMUP_CHUNKS]:
                state = codec.step(chunk, state)[1]
            for chunk in chunks[WARMUP_CHUNKS + round_index * per_round :][:per_round]:
                start = time.perf_counter()
                state = codec.step(chunk, state)[1]
                times[name].append(time.perf_counter() - start)
            del codec
    baseline = statistics.median(next(iter(times.values())))
    return {
        name: {"p50_ms": 1000 * statistics.median(values), "vs_default": baseline / statistics.median(values)}
        for name, values in times.items()
    }


def streaming_section(args, work: Path) -> dict:
    """The FocalCodec-Stream codec (full size: the released 4096-code architecture, or ``--stream_model``)
    streaming real speech on every runtime, the int8 model's cost, session options and sessions."""
    torch.manual_seed(0)
    if args.stream_model:
        model = FocalCodec.from_pretrained(args.stream_model)
    else:
        model = FocalCodec(**codec_config(args.quick, stream=True))
    model = model.eval().to(args.device)
    sig = real_speech(model.sample_rate_input, 2.0 if args.quick else 10.0)
    sig = sig[:, : sig.shape[1] // model.chunk_size * model.chunk_size]
    onnx_paths = export_stream_models(model, work) if args.device == "cpu" else {}
    result: dict = {
        "chunk_ms": 1000 * model.chunk_size / model.sample_rate_input,
        "audio_seconds": sig.shape[1] / model.sample_rate_input,
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "weights": args.stream_model or "random",
    }
    with torch.inference_mode():
        result["runtimes"] = measure_runtimes(
            model, sig, args.device, _runtimes(model, onnx_paths, args.threads)
        )
    if onnx_paths:
        print("  ONNX Runtime session options (int8)", flush=True)
        int8 = onnx_paths["onnxruntime-int8"]
        result["onnx_options"] = measure_onnx_options(int8, sig.numpy(), model.chunk_size, args.threads)
    result["sessions"] = sessions_figures(model, onnx_paths, args, real_speech(model.sample_rate_input))
    return result
