"""The registry of quality metrics: one :class:`MetricSpec` per metric key says all that
:class:`~utils.metrics.suite.QualityMetrics` (and the evaluation table) needs to know about it.

An entry gives the metric's key and display name, how to build it from the suite's arguments
(:class:`MetricSettings`, plus the sibling whose loaded model it shares), which signals it scores, its
offline fallback with the fallback's description, and the hint for using it offline. Whether it scores
the signal under test alone (:attr:`MetricSpec.quality_only`) follows from its signals.

Adding a metric takes one class and one entry:

1. a class, usually a :class:`~utils.metrics.common.UtteranceScores` (one score per utterance) or else a
   :class:`~utils.metrics.common.ModelMetric`, with ``clear``, ``summarize``, ``write_stats``,
   ``num_scored``, ``model_id`` and ``append(ids, sig, lens)`` (one signal) or
   ``append(ids, hyp, ref, lens)`` (the pair), raising
   :class:`~utils.metrics.common.MetricUnavailableError` when its model cannot be loaded;
2. a :class:`MetricSpec` in :data:`SPECS` below (or ``register(MetricSpec(...))`` from elsewhere).

Its key is then accepted by ``QualityMetrics(metrics=...)`` (and so by the YAML ``metrics`` list and
``evaluate_codec.py --metrics``), its figures are summarised, attributed and reported, and its
unavailability is warned about and recorded, with no other change.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch

from utils.metrics.common import ModelMetric
from utils.metrics.dnsmos import DNSMOS
from utils.metrics.dwer import DWER, WHISPER_SOURCE
from utils.metrics.pesq_score import PESQ
from utils.metrics.pitch import PitchMetrics
from utils.metrics.plcmos import PLCMOS
from utils.metrics.resemblyzer_similarity import ResemblyzerSimilarity
from utils.metrics.speaker_similarity import SV_SOURCE, SpeakerSimilarity
from utils.metrics.spectral_distance import SpectralDistance
from utils.metrics.stoi_score import STOI
from utils.metrics.utmos import UTMOS, UTMOS_SOURCE, RefUTMOS

__all__ = [
    "DEFAULT_METRICS",
    "REGISTRY",
    "SIGNALS",
    "SPECS",
    "Fallback",
    "MetricSettings",
    "MetricSpec",
    "check_registry",
    "known_metrics",
    "quality_only_metrics",
    "register",
    "resolve_metrics",
]

Signals = Literal["hyp", "ref", "pair"]
SIGNALS = ("hyp", "ref", "pair")  # the output under test, the reference (input) audio, or both


@dataclass(frozen=True)
class MetricSettings:
    """The arguments of :class:`~utils.metrics.suite.QualityMetrics` that metrics are built from."""

    sample_rate: int = 16000
    utmos_source: str = UTMOS_SOURCE
    utmos_checkpoint: str | None = None
    whisper_source: str = WHISPER_SOURCE
    sv_source: str = SV_SOURCE
    cache_dir: str | None = None
    whisper_language: str = "en"


@dataclass(frozen=True)
class Fallback:
    """The offline metric that replaces an unavailable one, reported under its own labels.

    key : the registry key of the replacement.
    description : how the warning names it (``"using <description> instead"``).
    """

    key: str
    description: str


# builds a metric from the suite's settings and the already-built sibling whose model it shares (or None)
Builder = Callable[[MetricSettings, ModelMetric | None], ModelMetric]


@dataclass(frozen=True)
class MetricSpec:
    """Everything about one metric key.

    key : what ``QualityMetrics(metrics=...)`` accepts (lower case).
    name : the display name: of the warning and of the ``unavailable`` entry when it cannot be computed.
    build : ``build(settings, sibling)`` -> the metric (models load lazily, at the first ``append``).
    signals : what it scores: ``"hyp"`` (the output alone), ``"ref"`` (the reference alone) or ``"pair"``.
    fallback : the offline replacement when its model cannot be loaded (None: not replaced).
    offline_hint : how to use it offline, appended to the warning (None: it needs no network).
    shares_model_with : the key of the sibling whose loaded model it reuses when both are requested.
    default : part of the suite's default metrics.
    """

    key: str
    name: str
    build: Builder
    signals: Signals
    fallback: Fallback | None = None
    offline_hint: str | None = None
    shares_model_with: str | None = None
    default: bool = False

    def __post_init__(self) -> None:
        if not self.key or self.key != self.key.strip().lower():
            raise ValueError(f"metric keys are lower case without spaces, got {self.key!r}")
        if self.signals not in SIGNALS:
            raise ValueError(f"{self.key}: signals must be one of {SIGNALS}, got {self.signals!r}")

    @property
    def quality_only(self) -> bool:
        """Whether it scores the signal under test alone, without a reference: such a metric can also score
        the reference audio itself (the reference row of the evaluation table)."""
        return self.signals == "hyp"

    def inputs(self, hyp: torch.Tensor, ref: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The signals its ``append`` takes after the ids, in order."""
        return {"hyp": (hyp,), "ref": (ref,), "pair": (hyp, ref)}[self.signals]

    def create(self, settings: MetricSettings, built: dict[str, ModelMetric]) -> ModelMetric:
        """The metric, sharing the model of its sibling when ``built`` (key -> metric) holds it."""
        sibling = built.get(self.shares_model_with) if self.shares_model_with else None
        return self.build(settings, sibling)


def _utmos(cls: type[UTMOS]) -> Builder:
    def build(settings: MetricSettings, sibling: ModelMetric | None) -> UTMOS:
        source, checkpoint = settings.utmos_source, settings.utmos_checkpoint
        return cls(settings.sample_rate, source, checkpoint=checkpoint, share_with=sibling)

    return build


def _dnsmos(label: str) -> Builder:
    return lambda settings, sibling: DNSMOS(settings.sample_rate, label, share_with=sibling)


UTMOS_HINT = "pass utmos_source=<local SpeechMOS clone> to use UTMOS offline"

SPECS = (
    MetricSpec(
        key="utmos",
        name="UTMOS",
        build=_utmos(UTMOS),
        signals="hyp",
        fallback=Fallback("dnsmos", "DNSMOS (speechmos)"),
        offline_hint=UTMOS_HINT,
        shares_model_with="ref_utmos",
        default=True,
    ),
    MetricSpec(
        key="ref_utmos",
        name="RefUTMOS",
        build=_utmos(RefUTMOS),
        signals="ref",
        fallback=Fallback("ref_dnsmos", "RefDNSMOS (speechmos)"),
        offline_hint=UTMOS_HINT,
        shares_model_with="utmos",
        default=True,
    ),
    MetricSpec(
        key="dwer",
        name="dWER/dCER",
        build=lambda s, _: DWER(s.sample_rate, s.whisper_source, s.cache_dir, s.whisper_language),
        signals="pair",
        offline_hint="pass whisper_source=<local folder saved with save_pretrained> to use Whisper offline",
        default=True,
    ),
    MetricSpec(
        key="sim",
        name="Sim",
        build=lambda s, _: SpeakerSimilarity(s.sample_rate, s.sv_source, cache_dir=s.cache_dir),
        signals="pair",
        fallback=Fallback("sim_resemblyzer", "Sim-Resemblyzer (resemblyzer)"),
        offline_hint=(
            "pass sv_source=<local wavlm-base-sv folder saved with save_pretrained> to use it offline"
        ),
        default=True,
    ),
    MetricSpec(
        key="dnsmos",
        name="DNSMOS",
        build=_dnsmos("DNSMOS"),
        signals="hyp",
        shares_model_with="ref_dnsmos",
    ),
    MetricSpec(
        key="ref_dnsmos",
        name="RefDNSMOS",
        build=_dnsmos("RefDNSMOS"),
        signals="ref",
        shares_model_with="dnsmos",
    ),
    MetricSpec(
        key="sim_resemblyzer",
        name="Sim-Resemblyzer",
        build=lambda s, _: ResemblyzerSimilarity(s.sample_rate),
        signals="pair",
    ),
    # Signal metrics: packages, no model weights (docs/evaluation.md has their definitions)
    MetricSpec(key="pesq_wb", name="PESQ-WB", build=lambda s, _: PESQ(s.sample_rate, "wb"), signals="pair"),
    MetricSpec(key="pesq_nb", name="PESQ-NB", build=lambda s, _: PESQ(s.sample_rate, "nb"), signals="pair"),
    MetricSpec(key="stoi", name="STOI", build=lambda s, _: STOI(s.sample_rate), signals="pair"),
    MetricSpec(key="estoi", name="eSTOI", build=lambda s, _: STOI(s.sample_rate, True), signals="pair"),
    MetricSpec(
        key="mel_distance", name="MelDist", build=lambda s, _: SpectralDistance(s.sample_rate), signals="pair"
    ),
    MetricSpec(
        key="stft_distance",
        name="STFTDist",
        build=lambda s, _: SpectralDistance(s.sample_rate, mel=False),
        signals="pair",
    ),
    MetricSpec(key="f0", name="F0", build=lambda s, _: PitchMetrics(s.sample_rate), signals="pair"),
    MetricSpec(key="plcmos", name="PLCMOS", build=lambda s, _: PLCMOS(s.sample_rate), signals="hyp"),
)

REGISTRY: dict[str, MetricSpec] = {}


def check_registry(registry: dict[str, MetricSpec] | None = None) -> list[str]:
    """What is wrong with the entries' links (empty when nothing): every fallback and model sibling must
    be registered, a fallback is no metric's own and serves one metric only, siblings name each other."""
    registry = REGISTRY if registry is None else registry
    problems, served = [], {}
    for key, spec in registry.items():
        if spec.key != key:
            problems.append(f"{key}: registered under another key than its own ({spec.key})")
        if spec.fallback is not None:
            target = spec.fallback.key
            if target not in registry or target == key:
                problems.append(f"{key}: its fallback {target!r} is not another registered metric")
            if target in served:
                problems.append(f"{key}: its fallback {target!r} already replaces {served[target]!r}")
            served[target] = key
        if spec.shares_model_with is not None:
            sibling = registry.get(spec.shares_model_with)
            if sibling is None or sibling.shares_model_with != key:
                problems.append(f"{key}: its model sibling {spec.shares_model_with!r} does not name it back")
    return problems


def register(*specs: MetricSpec) -> None:
    """Add metrics under new keys; their fallbacks and siblings must be registered already or among them."""
    added: dict[str, MetricSpec] = {}
    for spec in specs:
        if spec.key in REGISTRY or spec.key in added:
            raise ValueError(f"metric {spec.key!r} is already registered")
        added[spec.key] = spec
    problems = check_registry({**REGISTRY, **added})
    if problems:
        raise ValueError("; ".join(problems))
    REGISTRY.update(added)


register(*SPECS)

DEFAULT_METRICS = tuple(spec.key for spec in SPECS if spec.default)


def known_metrics() -> tuple[str, ...]:
    """Every registered key, in registration order."""
    return tuple(REGISTRY)


def quality_only_metrics() -> tuple[str, ...]:
    """The registered keys of the metrics that score the signal under test alone (see ``quality_only``)."""
    return tuple(key for key, spec in REGISTRY.items() if spec.quality_only)


def resolve_metrics(metrics: str | list[str] | tuple[str, ...]) -> list[str]:
    """Registered keys, in order and without repeats, from a list or a comma/space separated string."""
    if isinstance(metrics, str):
        metrics = metrics.replace(",", " ").split()
    names = [str(name).strip().lower() for name in metrics]
    unknown = sorted(set(names) - set(REGISTRY))
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; known: {', '.join(REGISTRY)}")
    return list(dict.fromkeys(names))
