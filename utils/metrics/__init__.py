"""Evaluation metrics (SpeechBrain ``MetricStats`` interface: ``clear``/``append``/``summarize``).

Primary metrics, as in the original recipe: :class:`UTMOS`/:class:`RefUTMOS`, :class:`DWER` (dWER and
dCER) and :class:`SpeakerSimilarity` (``Sim``). Offline models shipped in their wheels: :class:`DNSMOS`
and :class:`ResemblyzerSimilarity`. :class:`QualityMetrics` runs them all with fallbacks.
"""

from utils.metrics.code_usage import CodeUsage
from utils.metrics.common import MetricUnavailableError
from utils.metrics.dnsmos import DNSMOS
from utils.metrics.dwer import DWER
from utils.metrics.resemblyzer_similarity import ResemblyzerSimilarity
from utils.metrics.speaker_similarity import SpeakerSimilarity
from utils.metrics.suite import QualityMetrics
from utils.metrics.utmos import UTMOS, RefUTMOS

__all__ = [
    "DNSMOS",
    "DWER",
    "UTMOS",
    "CodeUsage",
    "MetricUnavailableError",
    "QualityMetrics",
    "RefUTMOS",
    "ResemblyzerSimilarity",
    "SpeakerSimilarity",
]
