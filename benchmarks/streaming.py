"""Streaming speed of a causal FocalCodec: per-chunk latency (p50 / p95 / max) and real-time factor of
resynthesis (encode and decode) at the model's chunk (80 ms), PyTorch eager vs TorchScript
(``FocalCodec.jit``) vs ONNX Runtime (``FocalCodec.onnx(return_state=True)``), in one run.

The codec is the one the FocalCodec-Stream recipe exports (built from its joint-stage YAML, see
``benchmarks.codec_speed.codec_config``), with random
weights (speed does not depend on them); every runtime streams the same 10 s of audio (2 s with
``--quick``), one chunk per call, after a warm-up stream of its own; the tokens of each runtime are compared
with eager's.
"""

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from benchmarks.codec_speed import codec_config
from benchmarks.measure import sync
from focalcodec.cli.streaming import Latencies
from focalcodec.codec import FocalCodec
from focalcodec.onnx_runtime import OnnxCodec
from focalcodec.streaming import CodecStream

__all__ = ["streaming_section"]

WARMUP_CHUNKS = 5


def _stream(make_stream: Callable, chunks: list, device: str) -> tuple[list[float], np.ndarray]:
    """Latency of every chunk of one fresh stream (after a warm-up stream), and its tokens."""
    warm = make_stream()
    for chunk in chunks[:WARMUP_CHUNKS]:
        warm.push(chunk)
    stream, seconds, toks = make_stream(), [], []
    for chunk in chunks:
        start = time.perf_counter()
        output = stream.push(chunk)
        sync(device)
        seconds.append(time.perf_counter() - start)
        toks.append(np.asarray(output.toks.cpu() if isinstance(output.toks, torch.Tensor) else output.toks))
    return seconds, np.concatenate(toks, axis=1)


def _runtimes(model: FocalCodec, work: Path, threads: int) -> dict[str, Callable]:
    """Stream factories: eager, TorchScript and (on the CPU) ONNX Runtime, whose session starts at its
    first stream (its idle threads spin, which would slow the PyTorch runs before it)."""
    scripted = model.jit()
    runtimes: dict[str, Callable] = {
        "eager": lambda: CodecStream(model),
        "torchscript": lambda: CodecStream(scripted),
    }
    if next(model.parameters()).device.type != "cpu":
        return runtimes
    start = time.perf_counter()
    path = model.onnx(work / "stream.onnx", batch_size=1, return_state=True)
    print(f"  ONNX export: {time.perf_counter() - start:.0f} s", flush=True)
    sessions: list = []

    def onnx_stream():
        if not sessions:
            import onnxruntime

            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = threads
            sessions.append(OnnxCodec(path, session_options=options))
        return sessions[0].stream()

    runtimes["onnxruntime"] = onnx_stream
    return runtimes


def measure_streaming(model: FocalCodec, seconds: float, device: str, threads: int, work: Path) -> dict:
    """Per-chunk latencies and real-time factor of every runtime on ``seconds`` of noise."""
    sig = 0.1 * torch.randn(
        1, round(seconds * model.sample_rate_input), generator=torch.Generator().manual_seed(0)
    )
    sig = sig[:, : sig.shape[1] // model.chunk_size * model.chunk_size]
    chunk_seconds = model.chunk_size / model.sample_rate_input
    result: dict = {
        "chunk_ms": 1000 * chunk_seconds,
        "audio_seconds": sig.shape[1] / model.sample_rate_input,
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "runtimes": {},
    }
    reference = None
    with torch.inference_mode():
        for name, make_stream in _runtimes(model, work, threads).items():
            pieces = sig.to(device) if name != "onnxruntime" else sig.numpy()
            chunks = [
                pieces[:, start : start + model.chunk_size]
                for start in range(0, sig.shape[1], model.chunk_size)
            ]
            seconds_per_chunk, toks = _stream(make_stream, chunks, device)
            latencies = Latencies(chunk_seconds, seconds_per_chunk, result["audio_seconds"])
            reference = toks if reference is None else reference
            result["runtimes"][name] = {
                "p50_ms": 1000 * latencies.percentile(50),
                "p95_ms": 1000 * latencies.percentile(95),
                "max_ms": 1000 * latencies.percentile(100),
                "real_time_factor": latencies.real_time_factor,
                "same_tokens_as_eager": bool(np.array_equal(toks, reference)),
            }
            figures = result["runtimes"][name]
            print(
                f"  {name}: p50 {figures['p50_ms']:.1f} ms, p95 {figures['p95_ms']:.1f} ms per chunk",
                flush=True,
            )
    return result


def streaming_section(args, work: Path) -> dict:
    """The FocalCodec-Stream codec (full size: the released 4096-code architecture) streaming 10 s of
    audio (2 s with ``--quick``) on every runtime."""
    torch.manual_seed(0)
    model = FocalCodec(**codec_config(args.quick, stream=True)).eval().to(args.device)
    return measure_streaming(model, 2.0 if args.quick else 10.0, args.device, args.threads, work)
