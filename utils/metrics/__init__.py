"""Evaluation metrics (SpeechBrain ``MetricStats`` interface: ``clear``/``append``/``summarize``).

Primary metrics, as in the original recipe: :class:`UTMOS`/:class:`RefUTMOS`, :class:`DWER` (dWER and
dCER) and :class:`SpeakerSimilarity` (``Sim``). Offline models shipped in their wheels: :class:`DNSMOS`,
:class:`PLCMOS` and :class:`ResemblyzerSimilarity`. Signal metrics computed by packages, with no model:
:class:`PESQ`, :class:`STOI`, :class:`SpectralDistance` (mel and STFT) and :class:`PitchMetrics` (F0).
:class:`QualityMetrics` runs them all with fallbacks, as the entries of the registry
(:mod:`utils.metrics.registry`, one :class:`MetricSpec` per metric key) describe them; every metric also
gives its per-utterance scores (:class:`UtteranceScore`).
"""

from utils.metrics.code_usage import CodeUsage
from utils.metrics.common import MetricUnavailableError, ModelMetric, UtteranceScore, UtteranceScores
from utils.metrics.dnsmos import DNSMOS
from utils.metrics.dwer import DWER
from utils.metrics.pesq_score import PESQ
from utils.metrics.pitch import PitchMetrics
from utils.metrics.plcmos import PLCMOS
from utils.metrics.registry import REGISTRY, Fallback, MetricSettings, MetricSpec, register
from utils.metrics.resemblyzer_similarity import ResemblyzerSimilarity
from utils.metrics.speaker_similarity import SpeakerSimilarity
from utils.metrics.spectral_distance import SpectralDistance
from utils.metrics.stoi_score import STOI
from utils.metrics.suite import QualityMetrics
from utils.metrics.utmos import UTMOS, RefUTMOS

__all__ = [
    "DNSMOS",
    "DWER",
    "PESQ",
    "PLCMOS",
    "REGISTRY",
    "STOI",
    "UTMOS",
    "CodeUsage",
    "Fallback",
    "MetricSettings",
    "MetricSpec",
    "MetricUnavailableError",
    "ModelMetric",
    "PitchMetrics",
    "QualityMetrics",
    "RefUTMOS",
    "ResemblyzerSimilarity",
    "SpeakerSimilarity",
    "SpectralDistance",
    "UtteranceScore",
    "UtteranceScores",
    "register",
]
