"""Evaluation metrics (SpeechBrain ``MetricStats`` interface: ``clear``/``append``/``summarize``).

Primary metrics, as in the original recipe: :class:`UTMOS`/:class:`RefUTMOS`, :class:`DWER` (dWER and
dCER) and :class:`SpeakerSimilarity` (``Sim``). Offline models shipped in their wheels: :class:`DNSMOS`
and :class:`ResemblyzerSimilarity`. :class:`QualityMetrics` runs them all with fallbacks, as the entries
of the registry (:mod:`utils.metrics.registry`, one :class:`MetricSpec` per metric key) describe them.
"""

from utils.metrics.code_usage import CodeUsage
from utils.metrics.common import MetricUnavailableError, ModelMetric, UtteranceScores
from utils.metrics.dnsmos import DNSMOS
from utils.metrics.dwer import DWER
from utils.metrics.registry import REGISTRY, Fallback, MetricSettings, MetricSpec, register
from utils.metrics.resemblyzer_similarity import ResemblyzerSimilarity
from utils.metrics.speaker_similarity import SpeakerSimilarity
from utils.metrics.suite import QualityMetrics
from utils.metrics.utmos import UTMOS, RefUTMOS

__all__ = [
    "DNSMOS",
    "DWER",
    "REGISTRY",
    "UTMOS",
    "CodeUsage",
    "Fallback",
    "MetricSettings",
    "MetricSpec",
    "MetricUnavailableError",
    "ModelMetric",
    "QualityMetrics",
    "RefUTMOS",
    "ResemblyzerSimilarity",
    "SpeakerSimilarity",
    "UtteranceScores",
    "register",
]
