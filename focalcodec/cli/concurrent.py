"""``--streaming --batch_size N`` (``encode``, ``resynth``): up to N files coded at once as concurrent live
streams (continuous batching, ``focalcodec.sessions``). At every step each open stream receives its next
chunk (80 ms), one batched call codes them all, and a file that ends leaves, the next one joining at the
following step. Each step is timed; with ``--realtime`` a step starts only once its chunks would have
arrived. Every file's tokens equal those of the file streamed alone (its audio within 1e-4).
"""

import time
from dataclasses import dataclass, field
from typing import Any

import torch

from focalcodec.audio import fit_length
from focalcodec.cli.batched import write_result
from focalcodec.cli.codec import Codec
from focalcodec.cli.files import Item, Report, plural, progress
from focalcodec.cli.streaming import Latencies, as_tensor, timed_step
from focalcodec.onnx_runtime import OnnxCodec
from focalcodec.streaming import CodecStreamServer

__all__ = ["run_concurrent"]


@dataclass
class _Stream:
    """An open file: its item, its zero-padded samples, how many were pushed, its outputs so far."""

    item: Item
    sig: torch.Tensor
    offset: int = 0
    outputs: list = field(default_factory=list)


def _admit(codec: Codec, server: Any, queue: list[Item], active: dict, count: int, report: Report) -> None:
    """Open sessions for the next files until ``count`` are active (unreadable files are reported)."""
    while queue and len(active) < count:
        item = queue.pop(0)
        try:
            sig = codec.pad_to_chunks(codec.read_audio(item))
        except Exception as error:  # a corrupt or truncated file
            report.fail(item.path, error)
            continue
        key = server.open()
        active[key] = _Stream(item, sig if isinstance(server, CodecStreamServer) else sig.numpy())
        if sig.shape[0] == 0:  # nothing to push: ends at once
            server.close(key)


def _feed(server: Any, active: dict, chunk: int) -> None:
    """Every active stream's next chunk; a stream whose samples are all pushed is closed."""
    for key, stream in active.items():
        if stream.offset < stream.sig.shape[0]:
            server.push(key, stream.sig[stream.offset : stream.offset + chunk])
            stream.offset += chunk
            if stream.offset >= stream.sig.shape[0]:
                server.close(key)


def _finish(codec: Codec, stream: _Stream, command: str, report: Report, subtype: str) -> None:
    """Write a finished stream's tokens (``encode``) or audio of the original duration (``resynth``)."""
    resynth = command == "resynth"
    result = torch.cat([as_tensor(output[2 if resynth else 0]) for output in stream.outputs])
    if resynth:
        result = fit_length(result.float(), codec.output_length(stream.item.meta))
    try:
        write_result(codec, stream.item, result, resynth, subtype)
        report.succeed(stream.item)
    except Exception as error:  # e.g. a full disk
        report.fail(stream.item.path, error)


@torch.inference_mode()
def run_concurrent(
    codec: Codec,
    items: list[Item],
    command: str,
    report: Report,
    realtime: bool,
    subtype: str,
    count: int,
    onnx: OnnxCodec | None = None,
) -> Latencies:
    """``command`` (``encode`` or ``resynth``) of the files as up to ``count`` concurrent streams, by
    PyTorch or by ``onnx`` (a stream model on ONNX Runtime); returns the latency of every step."""
    items = codec.probe_audio(items, report)
    server = CodecStreamServer(codec.model) if onnx is None else onnx.server()
    chunk = codec.model.chunk_size
    latencies = Latencies(chunk / codec.input_rate, unit="step")
    queue, active, start, index = list(items), {}, time.perf_counter(), 0
    with progress(len(items), f"{command} (streaming, {plural(count, 'stream')} at once)") as bar:
        while queue or active:
            _admit(codec, server, queue, active, count, report)
            _feed(server, active, chunk)
            with codec.autocast():
                timed_step(server.step, index, start, latencies, realtime)
            index += 1
            for key in list(active):
                active[key].outputs.append(server.pull(key))
                if key not in server.sessions:
                    stream = active.pop(key)
                    latencies.audio_seconds += (
                        stream.item.meta["num_samples"] / stream.item.meta["sample_rate"]
                    )
                    _finish(codec, stream, command, report, subtype)
                    bar.update(1)
    return latencies
