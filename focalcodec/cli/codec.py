"""The codec as the command line uses it: loading, reading audio at its rate, and encoding padded batches
whose tokens equal those of one file at a time."""

import contextlib
import math
from collections import Counter
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from focalcodec.audio import audio_info, read_audio, resample
from focalcodec.cli.files import Item, Report, UsageError, plural
from focalcodec.codec import FocalCodec
from focalcodec.hub import looks_like_hub_id

__all__ = ["PRECISIONS", "SIGN_MARGIN", "Codec", "load_codec"]

SIGN_MARGIN = 1e-5
"""Batched latents closer than this to 0 are recomputed alone (batched and single-file results differ by
float rounding, orders of magnitude less)."""

PRECISIONS = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}
"""``--precision``: autocast dtypes (``float32``: none)."""


def encoder_frames(encoder: torch.nn.Module, num_samples: int) -> int:
    """Frames the encoder makes of ``num_samples`` samples alone, from its convolutions' geometry (a
    non-causal block pads a too-short input to its kernel; a causal one makes ``ceil(L / stride)``)."""
    frames = num_samples
    for block in encoder.feature_extractor.layers:
        if block.causal:
            frames = math.ceil(frames / block.stride)
        else:
            frames = (max(frames, block.kernel_size) - block.kernel_size) // block.stride + 1
    return frames


class Codec:
    """A loaded ``FocalCodec`` and what the commands do with it.

    Arguments
    ---------
    model_name : official-format folder or Hub id.
    device : where to run.
    precision : a key of :data:`PRECISIONS` (autocast for the model; ``float32``: none).
    """

    def __init__(self, model_name: str, device: torch.device, precision: str = "float32") -> None:
        self.name = model_name
        self.device = device
        self.precision = precision
        self.model = FocalCodec.from_pretrained(model_name).eval().to(device)
        self.input_rate = self.model.sample_rate_input
        self.output_rate = self.model.sample_rate_output
        self.config = self.model.to_config()
        self.codebook_size = self.model.quantizer.codebook_size
        self.token_rate = self.model.token_rate
        self.causal = self.model.causal
        self.encoded_again = 0  # batched files re-encoded alone near a sign flip

    def describe(self) -> str:
        latency = f", {self.model.latency * 1000:g} ms latency" if self.causal else ""
        return (
            f"{self.name}: {self.token_rate:g} Hz tokens, {self.model.quantizer.dim} bits "
            f"({self.model.bitrate / 1000:.2f} kbps), input {self.input_rate} Hz, output "
            f"{self.output_rate} Hz{latency}, on {self.device}"
            + ("" if self.precision == "float32" else f" in {self.precision}")
        )

    def autocast(self) -> contextlib.AbstractContextManager:
        """Mixed precision for the model's calls (nothing in float32)."""
        dtype = PRECISIONS[self.precision]
        return contextlib.nullcontext() if dtype is None else torch.autocast(self.device.type, dtype=dtype)

    # ---------------------------------------------------------------------------------------------- audio

    def probe_audio(self, items: list[Item], report: Report) -> list[Item]:
        """Read the headers; unreadable files are reported. States resampling and downmixing."""
        readable = []
        for item in items:
            try:
                info = audio_info(item.path)
            except Exception as error:  # soundfile raises several types for bad files
                report.fail(item.path, error)
                continue
            item.meta = {
                "sample_rate": info.sample_rate,
                "channels": info.channels,
                "num_samples": info.num_samples,
            }
            item.key = (info.seconds,)
            readable.append(item)
        rates = Counter(item.meta["sample_rate"] for item in readable)
        for rate, count in sorted(rates.items()):
            if rate != self.input_rate:
                print(f"{plural(count, 'file')} at {rate} Hz resampled to {self.input_rate} Hz")
        channels = Counter(item.meta["channels"] for item in readable)
        for count_channels, count in sorted(channels.items()):
            if count_channels > 1:
                kind = "stereo" if count_channels == 2 else f"{count_channels}-channel"
                print(f"{plural(count, kind + ' file')} downmixed to mono (channel average)")
        return readable

    def read_audio(self, item: Item) -> torch.Tensor:
        """(N,) mono float32 waveform at the codec's input rate (the item's meta: what was actually read)."""
        sig, info = read_audio(item.path)
        item.meta.update(sample_rate=info.sample_rate, num_samples=info.num_samples, channels=info.channels)
        return resample(sig, info.sample_rate, self.input_rate)

    def output_length(self, meta: dict) -> int:
        """Samples at the output rate spanning the original duration."""
        return max(1, round(meta["num_samples"] * self.output_rate / meta["sample_rate"]))

    def pad_to_chunks(self, sig: torch.Tensor) -> torch.Tensor:
        """A causal model's input zero-padded to whole chunks, as streaming's ``flush`` does, so that offline
        and ``--streaming`` give the same tokens (a non-causal model's input is unchanged)."""
        if not self.causal:
            return sig
        return F.pad(sig, (0, -sig.shape[-1] % self.model.chunk_size))

    # ---------------------------------------------------------------------------------------------- model

    @torch.inference_mode()
    def encode(self, sigs: list[torch.Tensor]) -> list[torch.Tensor]:
        """Waveforms of any lengths -> (T,) tokens each, identical to encoding every file alone.

        The encoder runs on the zero-padded batch (a non-causal one with relative lengths that mask exactly
        each file's frames; a causal one's frames never see what follows them); the compressor, whose
        non-causal global context would see the padding, runs per file on its own frames.
        """
        sigs = [self.pad_to_chunks(sig) for sig in sigs]
        if len(sigs) == 1:
            with self.autocast():
                lats = [self.model.sig_to_lats(sigs[0][None].to(self.device))[0]]
        else:
            lats = self._batch_lats(sigs)
        toks = [self.model.lats_to_toks(lat[None].float())[0].cpu() for lat in lats]
        if len(sigs) > 1 and self.precision == "float32":  # reduced precision guarantees nothing
            for index, lat in enumerate(lats):
                if lat.float().abs().min() < SIGN_MARGIN:  # a sign could depend on rounding: redo alone
                    toks[index] = self.encode(sigs[index : index + 1])[0]
                    self.encoded_again += 1
        return toks

    def _batch_lats(self, sigs: list[torch.Tensor]) -> list[torch.Tensor]:
        """(T_i, code_dim) latents of each waveform, the encoder running on the padded batch."""
        model = self.model
        num_samples = [sig.shape[-1] for sig in sigs]
        batch = torch.stack([F.pad(sig, (0, max(num_samples) - sig.shape[-1])) for sig in sigs])
        frames = [encoder_frames(model.encoder, n) for n in num_samples]
        total = encoder_frames(model.encoder, max(num_samples))
        # ceil(length * total) must be each file's frame count exactly: half a frame below it
        length = None if self.causal else torch.tensor([(count - 0.5) / total for count in frames])
        with self.autocast():
            feats = model.sig_to_feats(batch.to(self.device), length=length)
            return [model.feats_to_lats(feats[i : i + 1, :count])[0] for i, count in enumerate(frames)]

    @torch.inference_mode()
    def decode(self, toks: list[torch.Tensor], output_length: int) -> list[torch.Tensor]:
        """Equal-length token sequences -> waveforms of ``output_length`` samples."""
        batch = torch.stack(toks).to(self.device)
        with self.autocast():
            sigs = self.model.toks_to_sig(batch, output_length=output_length)
        return list(sigs.float().cpu())

    def token_record(self, toks: torch.Tensor, meta: dict) -> dict[str, Any]:
        return {
            "toks": toks.long().clone(),  # not a view: torch.save would store the whole batch
            "sample_rate": int(meta["sample_rate"]),
            "num_samples": int(meta["num_samples"]),
            "channels": int(meta["channels"]),
            "token_rate": float(self.token_rate),
            "codebook_size": int(self.codebook_size),
            "model": self.name,
            "config": self.config,
        }


def load_codec(model: str, device: torch.device, precision: str = "float32") -> Codec:
    """The ``--model`` codec on ``device``; :class:`UsageError` when it cannot be found or loaded."""
    if device.type == "cuda":  # TF32 would make results depend on batching beyond SIGN_MARGIN
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    if precision == "float16" and device.type != "cuda":
        raise UsageError("--precision float16 needs a CUDA device (use bfloat16 on CPU)")
    if not Path(model).exists() and not looks_like_hub_id(model):
        raise UsageError(f"--model {model}: no such folder (expected config.json + model.safetensors)")
    try:
        return Codec(model, device, precision)
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as error:
        raise UsageError(f"--model {model}: cannot load the codec: {error}") from error
