"""``--streaming``: every file coded chunk by chunk with carried state, as a live stream would be, timing
each chunk; optionally paced in real time (a chunk is coded only once its audio, or its tokens, would have
arrived). The files written equal the offline command's. With ``--int8`` the audio is coded by the codec's
streaming step with int8 weights on ONNX Runtime (``focalcodec.onnx_quantize``), an approximation."""

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from focalcodec.audio import fit_length
from focalcodec.cli.batched import readable_tokens, write_result
from focalcodec.cli.codec import Codec
from focalcodec.cli.files import Item, Report, load_tokens, plural, progress
from focalcodec.onnx_runtime import OnnxCodec
from focalcodec.streaming import CodecStream, chunk_frames

__all__ = ["Latencies", "as_tensor", "run_streaming", "stream_audio", "timed_step"]


@dataclass
class Latencies:
    """Compute time of every chunk, the audio it spans, and (paced) the chunks that came late."""

    chunk_seconds: float
    seconds: list[float] = field(default_factory=list)
    audio_seconds: float = 0.0
    late: int = 0
    unit: str = "chunk"
    """What each latency times: a ``chunk`` of one stream, or a ``step`` of concurrent streams."""

    def percentile(self, q: float) -> float:
        ordered = sorted(self.seconds)
        return ordered[min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1)]

    @property
    def real_time_factor(self) -> float:
        """Compute time over audio duration (below 1: faster than real time)."""
        return sum(self.seconds) / self.audio_seconds

    def summary(self, realtime: bool) -> list[str]:
        if not self.seconds:
            return []
        chunk_ms = self.chunk_seconds * 1000
        p50, p95, worst = (1000 * self.percentile(q) for q in (50, 95, 100))
        keeps_up = "keeps up with" if p95 < chunk_ms else "does not keep up with"
        lines = [
            f"streaming: {plural(len(self.seconds), self.unit)} of {chunk_ms:g} ms, latency per {self.unit} "
            f"p50 {p50:.1f} ms, p95 {p95:.1f} ms, max {worst:.1f} ms; real-time factor "
            f"{self.real_time_factor:.3f} (compute / audio); p95 {keeps_up} real time"
        ]
        if realtime:
            late = plural(self.late, self.unit)
            lines.append(f"paced in real time: {late} late (not done when the next arrived)")
        return lines


def timed_step(
    step: Callable[[], Any], index: int, start: float, latencies: Latencies, realtime: bool
) -> Any:
    """``step()`` timed (device synchronised); paced, step ``index`` starts once ``index + 1`` chunks of
    time have passed since ``start`` (when its audio would have arrived)."""
    if realtime:
        time.sleep(max(0.0, start + (index + 1) * latencies.chunk_seconds - time.perf_counter()))
    began = time.perf_counter()
    output = step()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    done = time.perf_counter()
    latencies.seconds.append(done - began)
    latencies.late += realtime and done > start + (index + 2) * latencies.chunk_seconds
    return output


def _timed(pieces: list, step: Callable[[Any], Any], latencies: Latencies, realtime: bool) -> list:
    """``step`` of every piece in order, each timed (see :func:`timed_step`)."""
    start = time.perf_counter()
    return [
        timed_step(lambda piece=piece: step(piece), index, start, latencies, realtime)
        for index, piece in enumerate(pieces)
    ]


def as_tensor(array: Any) -> torch.Tensor:
    """A CPU tensor of a torch output or an ONNX Runtime (numpy) one."""
    return array.cpu() if isinstance(array, torch.Tensor) else torch.from_numpy(array)


def stream_audio(
    codec: Codec,
    sig: torch.Tensor,
    resynth: bool,
    latencies: Latencies,
    realtime: bool,
    onnx: OnnxCodec | None = None,
):
    """(N,) waveform -> (T,) tokens and (when ``resynth``) the (M,) audio of the zero-padded signal, by
    PyTorch or by ``onnx``, a stream model on ONNX Runtime."""
    pieces = list(codec.pad_to_chunks(sig)[None].split(codec.model.chunk_size, dim=1))
    if onnx is None:
        stream = CodecStream(codec.model, decode=resynth)
        with codec.autocast():
            outputs = _timed([piece.to(codec.device) for piece in pieces], stream.push, latencies, realtime)
    else:
        outputs = _timed([piece.numpy() for piece in pieces], onnx.stream().push, latencies, realtime)
    latencies.audio_seconds += sig.shape[-1] / codec.input_rate
    toks = torch.cat([as_tensor(output[0]) for output in outputs], dim=1)[0]
    return toks, torch.cat([as_tensor(output[2]) for output in outputs], dim=1)[
        0
    ].float() if resynth else None


def token_chunk(codec: Codec) -> int:
    """Tokens decoded per streaming call: one chunk of audio's worth, rounded up to whole decompressor
    chunks."""
    model = codec.model
    per_chunk = round(model.chunk_size * model.token_rate / model.sample_rate_input)
    return math.lcm(per_chunk, chunk_frames(model.decompressor, "decompressor"))


def stream_tokens(codec: Codec, toks: torch.Tensor, latencies: Latencies, realtime: bool) -> torch.Tensor:
    """(T,) tokens -> (M,) audio, decoded :func:`token_chunk` tokens at a time with carried state."""
    model = codec.model
    states: list = [(), ()]

    def step(codes: torch.Tensor) -> tuple:
        sig, decompressor_state, decoder_state = model.codes_to_sig(codes, *states, return_state=True)
        states[:] = decompressor_state, decoder_state
        return (sig,)

    codes = model.toks_to_codes(toks[None].to(codec.device))
    with codec.autocast():
        outputs = _timed(list(codes.split(token_chunk(codec), dim=1)), step, latencies, realtime)
    latencies.audio_seconds += toks.numel() / model.token_rate
    return torch.cat([sig for (sig,) in outputs], dim=1)[0].float().cpu()


@torch.inference_mode()
def _stream_item(
    codec: Codec, item: Item, command: str, latencies: Latencies, realtime: bool, onnx: OnnxCodec | None
) -> torch.Tensor:
    """The item's result: its tokens (``encode``) or its audio of the original duration."""
    if command == "decode":
        data = load_tokens(item.path)
        return fit_length(stream_tokens(codec, data["toks"], latencies, realtime), codec.output_length(data))
    toks, sig = stream_audio(codec, codec.read_audio(item), command == "resynth", latencies, realtime, onnx)
    return toks if command == "encode" else fit_length(sig, codec.output_length(item.meta))


def run_streaming(
    codec: Codec,
    items: list[Item],
    command: str,
    report: Report,
    realtime: bool,
    subtype: str,
    onnx: OnnxCodec | None = None,
) -> Latencies:
    """``command`` (``encode``, ``decode`` or ``resynth``) on each file in turn, chunk by chunk (audio by
    ``onnx``, a stream model on ONNX Runtime, if given)."""
    if command == "decode":
        items = readable_tokens(codec, items, report)
        latencies = Latencies(token_chunk(codec) / codec.token_rate)
    else:
        items = codec.probe_audio(items, report)
        latencies = Latencies(codec.model.chunk_size / codec.input_rate)
    with progress(len(items), f"{command} (streaming)") as bar:
        for item in items:
            try:
                result = _stream_item(codec, item, command, latencies, realtime, onnx)
                write_result(codec, item, result, command != "encode", subtype)
                report.succeed(item)
            except Exception as error:  # a corrupt file, out of memory: report it, go on
                report.fail(item.path, error)
            bar.update(1)
    return latencies
