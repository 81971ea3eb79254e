"""``onnx``: a codec in the official format -> an ONNX file, checked against PyTorch on ONNX Runtime
(``--int8``: with int8 weights, whose distance from PyTorch's float results is reported, not checked)."""

import time
from pathlib import Path

import numpy as np
import torch

from focalcodec.cli.codec import Codec
from focalcodec.cli.files import UsageError
from focalcodec.files import format_bytes
from focalcodec.onnx_runtime import OnnxCodec
from focalcodec.streaming import CodecStream

__all__ = ["check_onnx", "export_int8_stream", "run_onnx"]

CHECK_SECONDS = 1.0
"""Length of the noise the export is checked on."""
MAX_DIFFERENCE = 1e-4
"""Largest audio difference from PyTorch that passes the check."""


def check_onnx(codec: Codec, path: Path, streaming: bool) -> tuple[float, float]:
    """The share of ONNX Runtime's tokens equal to PyTorch's on a second of noise, and the largest audio
    difference (a stream file is checked chunk by chunk against :class:`CodecStream`)."""
    generator = torch.Generator().manual_seed(0)
    sig = 0.1 * torch.randn(1, round(CHECK_SECONDS * codec.input_rate), generator=generator)
    onnx_codec = OnnxCodec(path)
    with torch.inference_mode():
        if streaming:
            stream, onnx_stream = CodecStream(codec.model), onnx_codec.stream()
            expected = [stream.push(sig), stream.flush()]
            got = [onnx_stream.push(sig.numpy()), onnx_stream.flush()]
        else:
            toks, codes, rec = codec.model(sig)
            expected, got = [(toks, codes, rec)], [onnx_codec(sig.numpy())]
    toks = [(g[0], e[0].numpy()) for g, e in zip(got, expected, strict=True) if g[0].size]
    share = float(np.mean(np.concatenate([np.ravel(ours == theirs) for ours, theirs in toks])))
    difference = max(
        float(np.abs(g[2] - e[2].numpy()).max()) if g[2].size else 0.0
        for g, e in zip(got, expected, strict=True)
    )
    return share, difference


def run_onnx(
    codec: Codec,
    output: Path,
    streaming: bool,
    batch_size: int | None,
    chunk_size: int | None,
    int8: bool = False,
) -> int:
    """Export, then check; returns the exit status (1 when ONNX Runtime disagrees with PyTorch; with
    ``int8``, only when the model does not run)."""
    if streaming and not codec.causal:
        raise UsageError(f"--streaming exports a causal model's streaming step; {codec.name} is not causal")
    if streaming and chunk_size is not None and chunk_size % codec.model.chunk_size:
        raise UsageError(f"--chunk_size must be a multiple of the model's chunk of {codec.model.chunk_size}")
    output.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    quantize = "int8" if int8 else None
    path = codec.model.onnx(output, batch_size, chunk_size, return_state=streaming, quantize=quantize)
    size = sum(file.stat().st_size for file in (path, Path(f"{path}.data")) if file.exists())
    kind = ("streaming step" if streaming else "offline graph") + (" with int8 weights" if int8 else "")
    print(f"Exported the {kind} to {path} ({format_bytes(size)}) in {time.monotonic() - start:.0f} s")
    share, difference = check_onnx(codec, path, streaming)
    check = f"ONNX Runtime vs PyTorch on {CHECK_SECONDS:g} s of noise"
    if int8:
        print(
            f"{check}: int8 weights approximate float32: tokens equal on {100 * share:.1f} % of frames, "
            f"audio max difference {difference:.1e}"
        )
        return 0
    verdict = "tokens equal" if share == 1.0 else "TOKENS DIFFER"
    print(f"{check}: {verdict}, audio max difference {difference:.1e} (limit {MAX_DIFFERENCE:g})")
    return 0 if share == 1.0 and difference < MAX_DIFFERENCE else 1


def export_int8_stream(codec: Codec, folder: Path) -> OnnxCodec:
    """The codec's streaming step with int8 weights, exported into ``folder`` and opened on ONNX Runtime
    (dynamic batch axis: it also serves concurrent streams)."""
    start = time.monotonic()
    path = codec.model.onnx(folder / "stream.onnx", return_state=True, quantize="int8")
    print(f"Streaming with int8 weights on ONNX Runtime (exported in {time.monotonic() - start:.0f} s)")
    return OnnxCodec(path)
