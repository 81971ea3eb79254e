"""Streams per machine in real time: N independent sessions advanced together, one batched step per chunk
(continuous batching, ``focalcodec.sessions``), each session fed its next 80 ms of real speech before every
step, as live calls would be. A step that takes less than a chunk (80 ms) at p95 keeps every one of the N
streams in real time; the largest such N of 1, 8 and 32 is reported.

On the CPU the ONNX Runtime stream models serve (float32 and int8, ``OnnxStreamServer``); on CUDA, PyTorch
(``CodecStreamServer``). Sessions start at different places of the speech; each N runs warm-up steps, then
measured ones; a step's time covers pushing every session's chunk, the batched call and pulling the outputs.
"""

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from benchmarks.measure import sync
from focalcodec.codec import FocalCodec
from focalcodec.onnx_runtime import OnnxCodec
from focalcodec.streaming import CodecStreamServer

__all__ = ["SESSIONS", "onnx_session", "sessions_figures"]

SESSIONS = (1, 8, 32)


def onnx_session(path: Path, threads: int, **options) -> OnnxCodec:
    """An ``OnnxCodec`` with ``threads`` intra-op threads and the given ``SessionOptions`` attributes."""
    import onnxruntime

    session_options = onnxruntime.SessionOptions()
    session_options.intra_op_num_threads = threads
    for name, value in options.items():
        setattr(session_options, name, value)
    return OnnxCodec(path, session_options=session_options)


def measure_sessions(
    make_server: Callable, pieces: list, count: int, warmup: int, steps: int, device: str, chunk_ms: float
) -> dict:
    """Step times of ``count`` sessions fed ``pieces`` (one chunk each, session i starting at piece 37 i)."""
    server = make_server()
    keys = [server.open() for _ in range(count)]
    times = []
    for step in range(warmup + steps):
        for index, key in enumerate(keys):
            server.push(key, pieces[(37 * index + step) % len(pieces)])
        start = time.perf_counter()
        server.step()
        for key in keys:
            server.pull(key)
        sync(device)
        if step >= warmup:
            times.append(time.perf_counter() - start)
    ordered = sorted(times)
    p95 = 1000 * ordered[min(len(ordered) - 1, round(0.95 * len(ordered)) - 1)]
    p50 = 1000 * statistics.median(times)
    return {
        "p50_ms": p50,
        "p95_ms": p95,
        "max_ms": 1000 * ordered[-1],
        "real_time": p95 < chunk_ms,
        "audio_seconds_per_second": count * chunk_ms / p50,
    }


def sessions_figures(model: FocalCodec, onnx_paths: dict[str, Path], args, sig: torch.Tensor) -> dict:
    """For each server (ONNX Runtime float32 / int8 on the CPU, PyTorch on CUDA) and N in :data:`SESSIONS`,
    the step times, and the largest N in real time."""
    chunk_ms = 1000 * model.chunk_size / model.sample_rate_input
    chunks = sig[0, : sig.shape[1] // model.chunk_size * model.chunk_size].split(model.chunk_size)
    if onnx_paths:
        servers = {
            name: (lambda path=path: onnx_session(path, args.threads).server())
            for name, path in onnx_paths.items()
        }
        pieces = [chunk.numpy() for chunk in chunks]
    else:
        servers = {"pytorch": lambda: CodecStreamServer(model)}
        pieces = [chunk.to(args.device) for chunk in chunks]
    warmup, steps = (1, 3) if args.quick else (3, 20)
    result = {}
    for name, make_server in servers.items():
        figures = {}
        for count in SESSIONS:
            figures[str(count)] = measure_sessions(
                make_server, pieces, count, warmup, steps, args.device, chunk_ms
            )
            print(f"  {name}, {count} sessions: step p95 {figures[str(count)]['p95_ms']:.1f} ms", flush=True)
        in_time = [count for count in SESSIONS if figures[str(count)]["real_time"]]
        result[name] = {"by_sessions": figures, "max_real_time_sessions": max(in_time, default=0)}
    return result
