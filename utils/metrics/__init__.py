"""Evaluation metrics (SpeechBrain ``MetricStats`` interface: ``clear``/``append``/``summarize``)."""

from utils.metrics.code_usage import CodeUsage

__all__ = ["CodeUsage"]
