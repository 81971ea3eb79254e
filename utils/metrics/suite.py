"""The test-stage quality metrics as one object: UTMOS, RefUTMOS, dWER/dCER and speaker similarity, with
offline fallbacks (DNSMOS, Resemblyzer) and never a crash when a model cannot be loaded.

Every model is loaded lazily, at the first ``append``. When a primary model cannot be loaded, one warning
says which metric is unavailable and why, the fallback (if any, and if ``fallback`` is on) takes its
place, and the fallback's figures carry their own labels (``DNSMOS-OVRL``, ``Sim-Resemblyzer``, ...): a
fallback is never reported under the primary metric's name. ``unavailable`` maps each metric that could
not be computed to the reason, and ``sources()`` maps every reported figure to the model behind it.

Example (YAML-friendly arguments)::

    metrics = QualityMetrics(sample_rate=16000, utmos_source="/models/SpeechMOS",
                             whisper_source="/models/whisper-small", sv_source="/models/wavlm-base-sv")
    for batch in test_set:
        metrics.append(batch.id, hyp, ref, lens)
    stats = metrics.summarize()   # {"UTMOS": 4.05, "RefUTMOS": 4.1, "dWER": 2.2, "dCER": 1.1, "Sim": 0.97}
"""

import logging
import math
import os

import torch

from utils.metrics.common import MetricUnavailableError
from utils.metrics.dnsmos import DNSMOS
from utils.metrics.dwer import DWER, WHISPER_SOURCE
from utils.metrics.resemblyzer_similarity import ResemblyzerSimilarity
from utils.metrics.speaker_similarity import SV_SOURCE, SpeakerSimilarity
from utils.metrics.utmos import UTMOS, UTMOS_SOURCE, RefUTMOS

__all__ = ["DEFAULT_METRICS", "FALLBACKS", "QualityMetrics"]

logger = logging.getLogger(__name__)

DEFAULT_METRICS = ("utmos", "ref_utmos", "dwer", "sim")
KNOWN_METRICS = (*DEFAULT_METRICS, "dnsmos", "ref_dnsmos", "sim_resemblyzer")
FALLBACKS = {"utmos": "dnsmos", "ref_utmos": "ref_dnsmos", "sim": "sim_resemblyzer"}
NAMES = {
    "utmos": "UTMOS",
    "ref_utmos": "RefUTMOS",
    "dwer": "dWER/dCER",
    "sim": "Sim",
    "dnsmos": "DNSMOS",
    "ref_dnsmos": "RefDNSMOS",
    "sim_resemblyzer": "Sim-Resemblyzer",
}
FALLBACK_DESCRIPTIONS = {
    "dnsmos": "DNSMOS (speechmos)",
    "ref_dnsmos": "RefDNSMOS (speechmos)",
    "sim_resemblyzer": "Sim-Resemblyzer (resemblyzer)",
}
OFFLINE_HINTS = {
    "utmos": "pass utmos_source=<local SpeechMOS clone> to use UTMOS offline",
    "ref_utmos": "pass utmos_source=<local SpeechMOS clone> to use UTMOS offline",
    "dwer": "pass whisper_source=<local folder saved with save_pretrained> to use Whisper offline",
    "sim": "pass sv_source=<local wavlm-base-sv folder saved with save_pretrained> to use it offline",
}
SIGNALS = {  # which signals each metric scores
    "utmos": "hyp",
    "ref_utmos": "ref",
    "dnsmos": "hyp",
    "ref_dnsmos": "ref",
    "dwer": "pair",
    "sim": "pair",
    "sim_resemblyzer": "pair",
}


def _as_list(metrics) -> list[str]:
    if isinstance(metrics, str):
        metrics = metrics.replace(",", " ").split()
    names = [str(name).strip().lower() for name in metrics]
    unknown = sorted(set(names) - set(KNOWN_METRICS))
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; known: {', '.join(KNOWN_METRICS)}")
    return list(dict.fromkeys(names))


class QualityMetrics:
    """All test-stage metrics, built from simple (YAML-friendly) arguments.

    Arguments
    ---------
    sample_rate : sampling rate of the signals given to ``append``.
    metrics : which metrics, a list or a comma/space separated string out of ``utmos``, ``ref_utmos``,
        ``dwer`` (dWER and dCER), ``sim`` (the default four) and ``dnsmos``, ``ref_dnsmos``,
        ``sim_resemblyzer`` (the offline models, also usable on their own).
    fallback : replace an unavailable UTMOS/RefUTMOS by DNSMOS/RefDNSMOS and an unavailable Sim by
        Sim-Resemblyzer (dWER has no fallback).
    utmos_source : torch hub repo or local SpeechMOS clone; ``utmos_checkpoint``: optional local weights.
    whisper_source : Whisper hub id or local ``save_pretrained`` folder.
    sv_source : x-vector model hub id or local ``save_pretrained`` folder.
    cache_dir : Hugging Face cache folder for Whisper and the SV model (default: the usual HF cache).
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        metrics: str | list[str] | tuple[str, ...] = DEFAULT_METRICS,
        fallback: bool = True,
        utmos_source: str = UTMOS_SOURCE,
        utmos_checkpoint: str | None = None,
        whisper_source: str = WHISPER_SOURCE,
        sv_source: str = SV_SOURCE,
        cache_dir: str | None = None,
    ) -> None:
        self.sample_rate = sample_rate
        self.fallback = fallback
        self.utmos_source, self.utmos_checkpoint = utmos_source, utmos_checkpoint
        self.whisper_source, self.sv_source, self.cache_dir = whisper_source, sv_source, cache_dir
        self.requested = _as_list(metrics)
        self.metrics: dict[str, object] = {}
        for key in self.requested:
            self.metrics[key] = self._build(key)
        self.unavailable: dict[str, str] = {}
        self.replaced: dict[str, str] = {}  # primary key -> fallback key

    @classmethod
    def from_config(cls, config: dict | None) -> "QualityMetrics":
        """Build from a config dict holding the constructor's arguments (e.g. a YAML section)."""
        return cls(**(config or {}))

    def _build(self, key: str):
        """A metric object for ``key``; models are shared where two metrics use the same one."""
        sr = self.sample_rate
        if key == "utmos":
            return UTMOS(
                sr,
                self.utmos_source,
                checkpoint=self.utmos_checkpoint,
                share_with=self.metrics.get("ref_utmos"),
            )
        if key == "ref_utmos":
            return RefUTMOS(
                sr, self.utmos_source, checkpoint=self.utmos_checkpoint, share_with=self.metrics.get("utmos")
            )
        if key == "dwer":
            return DWER(sr, self.whisper_source, cache_dir=self.cache_dir)
        if key == "sim":
            return SpeakerSimilarity(sr, self.sv_source, cache_dir=self.cache_dir)
        if key == "dnsmos":
            return DNSMOS(sr, "DNSMOS", share_with=self.metrics.get("ref_dnsmos"))
        if key == "ref_dnsmos":
            return DNSMOS(sr, "RefDNSMOS", share_with=self.metrics.get("dnsmos"))
        if key == "sim_resemblyzer":
            return ResemblyzerSimilarity(sr)
        raise ValueError(key)

    def clear(self) -> None:
        """Forget all scores (loaded models and the list of unavailable metrics are kept)."""
        for metric in self.metrics.values():
            metric.clear()

    @torch.no_grad()
    def append(
        self, ids: list[str], hyp: torch.Tensor, ref: torch.Tensor, lens: torch.Tensor | None = None
    ) -> None:
        """Score one batch with every available metric.

        Arguments
        ---------
        ids : utterance ids, one per item.
        hyp : (B, N) resynthesised signals at ``sample_rate``.
        ref : (B, N) reference (input) signals at ``sample_rate``.
        lens : (B,) relative lengths shared by hyp and ref, or None when nothing is padded.
        """
        for key in list(self.metrics):
            self._append_one(key, ids, hyp, ref, lens)

    def _append_one(self, key: str, ids, hyp, ref, lens) -> None:
        metric = self.metrics[key]
        try:
            if SIGNALS[key] == "pair":
                metric.append(ids, hyp, ref, lens)
            else:
                metric.append(ids, hyp if SIGNALS[key] == "hyp" else ref, lens)
        except MetricUnavailableError as error:
            del self.metrics[key]
            self.unavailable[NAMES[key]] = f"could not load {error.source} ({error.reason})"
            substitute = FALLBACKS.get(key) if self.fallback else None
            if substitute is None:
                action = (
                    "not reported ("
                    + ("fallback disabled" if key in FALLBACKS else "no offline fallback")
                    + ")"
                )
            elif substitute in self.requested:
                action = f"{NAMES[substitute]} was requested too and is reported under its own name"
                substitute = None
            else:
                action = f"using {FALLBACK_DESCRIPTIONS[substitute]} instead"
            hint = f"; {OFFLINE_HINTS[key]}" if key in OFFLINE_HINTS else ""
            logger.warning(f"{NAMES[key]} unavailable: {self.unavailable[NAMES[key]]} — {action}{hint}")
            if substitute is not None:
                self.replaced[key] = substitute
                self.metrics[substitute] = self._build(substitute)
                self._append_one(substitute, ids, hyp, ref, lens)

    def summarize(self, field: str | None = None) -> dict[str, float] | float:
        """One flat dict of labelled figures from every metric that produced numbers, e.g.
        ``{"UTMOS", "RefUTMOS", "dWER", "dCER", "Sim"}`` or, offline,
        ``{"DNSMOS-OVRL", ..., "Sim-Resemblyzer"}``.
        Metrics that saw no data are left out. ``field`` picks one figure."""
        stats: dict[str, float] = {}
        for metric in self.metrics.values():
            if _has_data(metric):
                stats.update(metric.summarize())
        return stats if field is None else stats[field]

    def sources(self) -> dict[str, str]:
        """``{figure label: model that produced it}`` for every figure ``summarize`` reports."""
        sources = {}
        for metric in self.metrics.values():
            if _has_data(metric):
                sources.update(dict.fromkeys(metric.summarize(), metric.model_id))
        return sources

    def report(self) -> str:
        """Human-readable summary: each figure with its model, then the unavailable metrics and why."""
        sources = self.sources()
        lines = [
            f"{label}: {_format(value)}  [{sources[label]}]" for label, value in self.summarize().items()
        ]
        lines += [f"{name}: unavailable ({reason})" for name, reason in self.unavailable.items()]
        return "\n".join(lines) + "\n"

    def write_stats(self, file) -> None:
        """Write the report and every metric's per-utterance details (dWER transcripts and error counts,
        scores) to ``file`` (a path or an open text stream)."""
        if isinstance(file, str | os.PathLike):
            with open(file, "w", encoding="utf-8") as stream:
                self.write_stats(stream)
            return
        file.write(self.report())
        for metric in self.metrics.values():
            if _has_data(metric):
                file.write("\n")
                metric.write_stats(file)


def _has_data(metric) -> bool:
    return bool(getattr(metric, "utterances", None) or getattr(metric, "scores", None))


def _format(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.4f}"
