"""``onnx``: a codec in the official format -> an ONNX file, checked against PyTorch on ONNX Runtime."""

import time
from pathlib import Path

import numpy as np
import torch

from focalcodec.cli.codec import Codec
from focalcodec.cli.files import UsageError
from focalcodec.files import format_bytes
from focalcodec.onnx_runtime import OnnxCodec
from focalcodec.streaming import CodecStream

__all__ = ["check_onnx", "run_onnx"]

CHECK_SECONDS = 1.0
"""Length of the noise the export is checked on."""
MAX_DIFFERENCE = 1e-4
"""Largest audio difference from PyTorch that passes the check."""


def check_onnx(codec: Codec, path: Path, streaming: bool) -> tuple[bool, float]:
    """Whether ONNX Runtime gives PyTorch's tokens on a second of noise, and the largest audio difference
    (a stream file is checked chunk by chunk against :class:`CodecStream`)."""
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
    same_tokens = all(np.array_equal(g[0], e[0].numpy()) for g, e in zip(got, expected, strict=True))
    difference = max(
        float(np.abs(g[2] - e[2].numpy()).max()) if g[2].size else 0.0
        for g, e in zip(got, expected, strict=True)
    )
    return same_tokens, difference


def run_onnx(
    codec: Codec, output: Path, streaming: bool, batch_size: int | None, chunk_size: int | None
) -> int:
    """Export, then check; returns the exit status (1 when ONNX Runtime disagrees with PyTorch)."""
    if streaming and not codec.causal:
        raise UsageError(f"--streaming exports a causal model's streaming step; {codec.name} is not causal")
    if streaming and chunk_size is not None and chunk_size % codec.model.chunk_size:
        raise UsageError(f"--chunk_size must be a multiple of the model's chunk of {codec.model.chunk_size}")
    output.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    path = codec.model.onnx(output, batch_size=batch_size, chunk_size=chunk_size, return_state=streaming)
    size = sum(file.stat().st_size for file in (path, Path(f"{path}.data")) if file.exists())
    kind = "streaming step" if streaming else "offline graph"
    print(f"Exported the {kind} to {path} ({format_bytes(size)}) in {time.monotonic() - start:.0f} s")
    same_tokens, difference = check_onnx(codec, path, streaming)
    verdict = "tokens equal" if same_tokens else "TOKENS DIFFER"
    check = f"ONNX Runtime vs PyTorch on {CHECK_SECONDS:g} s of noise"
    print(f"{check}: {verdict}, audio max difference {difference:.1e} (limit {MAX_DIFFERENCE:g})")
    return 0 if same_tokens and difference < MAX_DIFFERENCE else 1
