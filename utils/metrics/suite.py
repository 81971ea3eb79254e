"""The test-stage quality metrics as one object: UTMOS, RefUTMOS, dWER/dCER and speaker similarity, with
offline fallbacks (DNSMOS, Resemblyzer) and never a crash when a model cannot be loaded.

Every model is loaded lazily, at the first ``append``. When a primary model cannot be loaded, one warning
says which metric is unavailable and why, the fallback (if any, and if ``fallback`` is on) takes its
place, and the fallback's figures carry their own labels (``DNSMOS-OVRL``, ``Sim-Resemblyzer``, ...): a
fallback is never reported under the primary metric's name. ``unavailable`` maps each metric that could
not be computed to the reason, and ``sources()`` maps every reported figure to the model behind it.

What each metric key means (its class, signals, fallback, offline hint) is stated once, in
:mod:`utils.metrics.registry`; this module only runs the entries.

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

from utils.metrics.common import MetricUnavailableError, ModelMetric, UtteranceScore
from utils.metrics.dwer import WHISPER_SOURCE
from utils.metrics.registry import (
    DEFAULT_METRICS,
    REGISTRY,
    MetricSettings,
    MetricSpec,
    resolve_metrics,
)
from utils.metrics.speaker_similarity import SV_SOURCE
from utils.metrics.utmos import UTMOS_SOURCE

__all__ = ["DEFAULT_METRICS", "QualityMetrics"]

logger = logging.getLogger(__name__)


class QualityMetrics:
    """All test-stage metrics, built from simple (YAML-friendly) arguments.

    Arguments
    ---------
    sample_rate : sampling rate of the signals given to ``append``.
    metrics : which metrics, a list or a comma/space separated string of registry keys: ``utmos``,
        ``ref_utmos``, ``dwer`` (dWER and dCER), ``sim`` (the default four), ``dnsmos``,
        ``ref_dnsmos``, ``sim_resemblyzer`` (the offline models, also usable on their own) and the signal
        metrics ``pesq_wb``, ``pesq_nb``, ``stoi``, ``estoi``, ``mel_distance``, ``stft_distance``,
        ``f0`` and ``plcmos`` (docs/evaluation.md).
    fallback : replace an unavailable metric by its registered offline fallback (UTMOS/RefUTMOS by
        DNSMOS/RefDNSMOS, Sim by Sim-Resemblyzer; dWER has none).
    utmos_source : torch hub repo or local SpeechMOS clone; ``utmos_checkpoint``: optional local weights.
    whisper_source : Whisper hub id or local ``save_pretrained`` folder.
    sv_source : x-vector model hub id or local ``save_pretrained`` folder.
    cache_dir : Hugging Face cache folder for Whisper and the SV model (default: the usual HF cache).
    whisper_language : the language Whisper transcribes for dWER/dCER (a Whisper code; languages written
        without spaces get dCER only, utils/metrics/dwer.py).

    The arguments other than ``metrics`` and ``fallback`` are kept in ``settings`` (and readable as
    attributes, e.g. ``sample_rate``).
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
        whisper_language: str = "en",
    ) -> None:
        self.settings = MetricSettings(
            sample_rate,
            utmos_source,
            utmos_checkpoint,
            whisper_source,
            sv_source,
            cache_dir,
            whisper_language,
        )
        self.fallback = fallback
        self.requested = resolve_metrics(metrics)
        self.metrics: dict[str, ModelMetric] = {}
        for key in self.requested:
            self.metrics[key] = self._build(key)
        self.unavailable: dict[str, str] = {}  # display name -> why it could not be computed
        self.replaced: dict[str, str] = {}  # primary key -> fallback key

    def __getattr__(self, name: str):
        settings = self.__dict__.get("settings")
        if settings is not None and name in MetricSettings.__dataclass_fields__:
            return getattr(settings, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @classmethod
    def from_config(cls, config: dict | None) -> "QualityMetrics":
        """Build from a config dict holding the constructor's arguments (e.g. a YAML section)."""
        return cls(**(config or {}))

    def _build(self, key: str) -> ModelMetric:
        """The metric of ``key``, sharing the model of an already-built sibling."""
        return REGISTRY[key].create(self.settings, self.metrics)

    def _reporting(self) -> list[ModelMetric]:
        """The metrics that have scored something (the others are left out of every report)."""
        return [metric for metric in self.metrics.values() if metric.num_scored > 0]

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
        spec = REGISTRY[key]
        try:
            self.metrics[key].append(ids, *spec.inputs(hyp, ref), lens)
        except MetricUnavailableError as error:
            del self.metrics[key]
            substitute = self._give_up(spec, error)
            if substitute is not None:
                self.replaced[key] = substitute
                self.metrics[substitute] = self._build(substitute)
                self._append_one(substitute, ids, hyp, ref, lens)

    def _give_up(self, spec: MetricSpec, error: MetricUnavailableError) -> str | None:
        """Record ``spec``'s metric as unavailable, warn once, and return the key of the metric that takes
        its place (None when none does)."""
        self.unavailable[spec.name] = f"could not load {error.source} ({error.reason})"
        fallback = spec.fallback if self.fallback else None
        if fallback is None:
            action = f"not reported ({'fallback disabled' if spec.fallback else 'no offline fallback'})"
        elif fallback.key in self.requested:
            action = f"{REGISTRY[fallback.key].name} was requested too and is reported under its own name"
            fallback = None
        else:
            action = f"using {fallback.description} instead"
        hint = f"; {spec.offline_hint}" if spec.offline_hint else ""
        logger.warning(f"{spec.name} unavailable: {self.unavailable[spec.name]} — {action}{hint}")
        return None if fallback is None else fallback.key

    def summarize(self, field: str | None = None) -> dict[str, float] | float:
        """One flat dict of labelled figures from every metric that produced numbers, e.g.
        ``{"UTMOS", "RefUTMOS", "dWER", "dCER", "Sim"}`` or, offline,
        ``{"DNSMOS-OVRL", ..., "Sim-Resemblyzer"}``.
        Metrics that saw no data are left out. ``field`` picks one figure."""
        stats: dict[str, float] = {}
        for metric in self._reporting():
            stats.update(metric.summarize())
        return stats if field is None else stats[field]

    def sources(self) -> dict[str, str]:
        """``{figure label: model that produced it}`` for every figure ``summarize`` reports."""
        sources = {}
        for metric in self._reporting():
            sources.update(dict.fromkeys(metric.summarize(), metric.model_id))
        return sources

    def utterance_scores(self) -> list[UtteranceScore]:
        """Every figure of every utterance, from every metric that produced numbers."""
        return [row for metric in self._reporting() for row in metric.utterance_scores()]

    def lower_better(self) -> dict[str, bool]:
        """``{figure label: whether lower is better}`` for every figure ``summarize`` reports."""
        return {
            label: metric.lower_better(label) for metric in self._reporting() for label in metric.summarize()
        }

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
        for metric in self._reporting():
            file.write("\n")
            metric.write_stats(file)


def _format(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.4f}"
