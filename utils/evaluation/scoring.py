"""Scoring whole codecs on a test set: one row of figures per model (quality, intelligibility, speaker
similarity, signal metrics, code usage) with every utterance's scores, plus the reference audio's own."""

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torchaudio
from tqdm import tqdm

from focalcodec.audio import AUDIO_SUFFIXES, as_written, fit_length, load_audio, write_wav
from focalcodec.codec import FocalCodec
from focalcodec.streaming import CodecStream
from utils.metrics import CodeUsage, QualityMetrics, UtteranceScore
from utils.metrics.registry import quality_only_metrics

__all__ = [
    "QUALITY_ONLY",
    "ModelScores",
    "Utterance",
    "evaluate_codec",
    "list_utterances",
    "load_written",
    "resynthesize",
    "save_references",
    "score_reference",
]

logger = logging.getLogger(__name__)

# Metrics that score one signal alone (registry entries whose ``quality_only`` is true): the reference row
# shows these for the input audio
QUALITY_ONLY = quality_only_metrics()


@dataclass
class Utterance:
    """One test item: an id and its audio file."""

    id: str
    path: str


@dataclass
class ModelScores:
    """One row of the table: a model's figures, the model behind each figure, every utterance's scores
    (``scores``, from which the intervals come), which figures are better lower, and the files of its
    saved outputs (``audios``: id -> WAV, played by the listening report)."""

    name: str
    token_rate: float | None = None
    bitrate_kbps: float | None = None
    figures: dict[str, float] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)
    scores: list[UtteranceScore] = field(default_factory=list)
    lower_better: dict[str, bool] = field(default_factory=dict)
    audios: dict[str, Path] = field(default_factory=dict)

    @classmethod
    def from_metrics(cls, name: str, metrics: QualityMetrics, **fields) -> "ModelScores":
        """The row of what ``metrics`` scored (``fields``: ``token_rate``, ``bitrate_kbps``)."""
        return cls(
            name,
            figures=metrics.summarize(),
            sources=metrics.sources(),
            unavailable=dict(metrics.unavailable),
            scores=metrics.utterance_scores(),
            lower_better=metrics.lower_better(),
            **fields,
        )


def list_utterances(data: str | os.PathLike, max_utterances: int | None = None) -> list[Utterance]:
    """Test items from a SpeechBrain JSON manifest (e.g. ``save/test.json``) or a folder of audio files.

    Sorted by id, cut to ``max_utterances`` when given."""
    data = Path(data)
    if data.is_dir():
        files = sorted(p for p in data.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
        items = [Utterance(str(p.relative_to(data).with_suffix("")), str(p)) for p in files]
    elif data.is_file():
        manifest = json.loads(data.read_text(encoding="utf-8"))
        items = sorted((Utterance(key, entry["wav"]) for key, entry in manifest.items()), key=lambda u: u.id)
    else:
        raise FileNotFoundError(f"{data} is neither a manifest (JSON) nor a folder of audio files")
    if not items:
        raise ValueError(f"no audio found in {data}")
    return items[:max_utterances] if max_utterances else items


def resynthesize(
    codec: FocalCodec, sig: torch.Tensor, streaming: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens (1, T) and resynthesis (1, N) of a (1, N) waveform, at the input rate (a 24 kHz output is
    resampled to 16 kHz). ``streaming``: the signal goes through a causal codec chunk by chunk
    (``codec.chunk_size`` samples at a time, state carried, the last chunk zero-padded), as a live stream."""
    if streaming:
        stream = CodecStream(codec)
        outputs = [stream.push(piece) for piece in sig.split(codec.chunk_size, dim=1)] + [stream.flush()]
        toks = torch.cat([output.toks for output in outputs], dim=1)
        rec = torch.cat([output.sig for output in outputs], dim=1)
        rec = rec[:, : int(sig.shape[1] * codec.sample_rate_output / codec.sample_rate_input)]
    else:
        toks, _, rec = codec(sig)
    if codec.sample_rate_output != codec.sample_rate_input:
        rec = torchaudio.functional.resample(rec, int(codec.sample_rate_output), codec.sample_rate_input)
    return toks, fit_length(rec, sig.shape[1])


def load_written(path: str | os.PathLike, sample_rate: int) -> torch.Tensor:
    """(1, N) audio file at ``sample_rate`` as a 16-bit WAV of it holds it (:func:`as_written`): the form in
    which references are scored and written."""
    return as_written(load_audio(path, sample_rate)[None]).sig


@torch.no_grad()
def evaluate_codec(
    name: str,
    codec: FocalCodec,
    utterances: list[Utterance],
    metrics: QualityMetrics,
    device: str = "cpu",
    streaming: bool = False,
    audio_folder: str | os.PathLike | None = None,
    num_saved_audios: int = 0,
) -> ModelScores:
    """Encode and resynthesize every utterance (one at a time, so no padding; chunk by chunk when
    ``streaming``, see :func:`resynthesize`), score the output against the input, and count the tokens
    over the whole set. The output and the input are scored as 16-bit WAV files hold them
    (:func:`as_written`); the first ``num_saved_audios`` outputs are written to ``audio_folder`` as
    ``<id>.wav``: what is heard is what was scored. Clipped output samples are counted (a warning)."""
    codec = codec.to(device).eval()
    usage = CodeUsage(2**codec.quantizer.dim)
    metrics.clear()
    clipped, audios = 0, {}
    for index, utt in enumerate(tqdm(utterances, desc=f"evaluating {name}", dynamic_ncols=True)):
        sig = load_written(utt.path, codec.sample_rate_input)
        toks, rec = resynthesize(codec, sig.to(device), streaming)
        rec, clipped_here = as_written(rec)
        clipped += clipped_here
        usage.append([utt.id], toks.cpu())
        metrics.append([utt.id], rec, sig)
        if audio_folder is not None and index < num_saved_audios:  # ids with "/" make subfolders
            audios[utt.id] = Path(audio_folder) / f"{utt.id}.wav"
            write_wav(audios[utt.id], rec[0], codec.sample_rate_input)
    if clipped:
        logger.warning(f"{name}: {clipped} output samples outside [-1, 1] were clipped (scored as written)")
    rate = codec.token_rate
    row = ModelScores.from_metrics(
        name, metrics, token_rate=rate, bitrate_kbps=rate * codec.quantizer.dim / 1000
    )
    row.figures.update({"Code usage": usage.summarize("usage"), "Entropy": usage.summarize("entropy")})
    row.sources.update({"Code usage": "token histogram", "Entropy": "token histogram"})
    row.audios = audios
    return row


@torch.no_grad()
def score_reference(
    utterances: list[Utterance], metrics: QualityMetrics, sample_rate: int = 16000
) -> ModelScores:
    """The input audio's own quality, as the table's first row: ``metrics`` should hold only metrics of
    one signal (:data:`QUALITY_ONLY`), which then score the reference in place of a resynthesis."""
    metrics.clear()
    for utt in tqdm(utterances, desc="scoring the reference", dynamic_ncols=True):
        sig = load_written(utt.path, sample_rate)
        metrics.append([utt.id], sig, sig)
    return ModelScores.from_metrics("reference", metrics)


def save_references(
    utterances: list[Utterance], folder: str | os.PathLike, sample_rate: int = 16000
) -> dict[str, Path]:
    """Write each utterance's input audio as it is scored (:func:`load_written`) to ``folder/<id>.wav``
    (what the listening report plays as the reference); ``{id: path}``."""
    paths = {}
    for utt in utterances:
        paths[utt.id] = Path(folder) / f"{utt.id}.wav"
        write_wav(paths[utt.id], load_written(utt.path, sample_rate)[0], sample_rate)
    return paths
