"""The plumbing the metrics share (utils/metrics/common.py): cutting and resampling padded batches, the
network probe, offline loading that fails fast and is remembered, and the base classes by which every
metric says whether it has data."""

import io
import math
import time

import pytest
import torch
from helpers.metric_signals import tone

import utils.metrics.common as common
from utils.metrics import DWER, UTMOS, MetricUnavailableError, SpeakerSimilarity
from utils.metrics.common import ModelMetric, UtteranceScores, mean_or_nan, prepare_items, unreachable

pytest_plugins = ("helpers.metric_models",)


def test_prepare_items_cuts_then_resamples():
    batch = torch.randn(2, 2400)
    items = prepare_items(batch, torch.tensor([1.0, 0.5]), 24000)
    assert [item.shape[-1] for item in items] == [1600, 800]
    with pytest.raises(ValueError, match="lens"):
        prepare_items(batch, batch, 16000)  # a signal passed where lens belongs


def test_probe_fails_fast_and_defers_to_proxies(monkeypatch):
    for name in common.PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    start = time.monotonic()
    reason = unreachable("https://hub.invalid", timeout=2.0)  # .invalid never resolves
    assert reason is not None and "hub.invalid" in reason and time.monotonic() - start < 3.0
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    assert unreachable("https://hub.invalid") is None  # a proxy may reach it: let the download try


def test_primary_metrics_unavailable_offline(offline, tmp_path):
    start = time.monotonic()
    signal = tone(0.5, 220)[None]
    for metric in (
        UTMOS(),
        DWER(cache_dir=str(offline)),
        SpeakerSimilarity(cache_dir=str(offline)),
        SpeakerSimilarity(source=str(tmp_path)),  # an empty local folder
    ):
        with pytest.raises(MetricUnavailableError) as error:
            metric.append(["a"], signal) if isinstance(metric, UTMOS) else metric.append(
                ["a"], signal, signal
            )
        assert error.value.reason and error.value.source in str(error.value)
        with pytest.raises(MetricUnavailableError):  # remembered: no second attempt
            metric.load()
    assert time.monotonic() - start < 10.0


def test_hf_hub_offline_is_honoured_without_probing(monkeypatch, tmp_path):
    def no_probe(url, timeout=0):
        raise AssertionError("probed the network although HF_HUB_OFFLINE is set")

    monkeypatch.setattr(common, "unreachable", no_probe)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    metric = DWER(cache_dir=str(tmp_path))
    with pytest.raises(MetricUnavailableError, match="HF_HUB_OFFLINE"):
        metric.load()


class Peaks(UtteranceScores):
    """The smallest UtteranceScores: each item's peak, no model."""

    label, model_id, score_kind = "Peak", "max |x|", "linear"

    def __init__(self) -> None:
        self.clear()

    def append(self, ids, sig, lens=None) -> None:
        self.scores.extend(item.abs().max().item() for item in prepare_items(sig, lens, 16000))
        self.ids.extend(ids)


def test_metrics_say_whether_they_have_data():
    with pytest.raises(NotImplementedError):
        ModelMetric.__new__(ModelMetric).num_scored  # noqa: B018 (every metric must say it)
    metric = Peaks()
    assert metric.num_scored == 0 and math.isnan(metric.summarize("Peak"))
    batch = torch.tensor([[0.5, -0.25, 0.9], [0.1, -0.2, 0.9]])
    metric.append(["a", "b"], batch, torch.tensor([1.0, 2 / 3]))  # b's 0.9 is padding
    assert metric.num_scored == 2 and metric.summarize() == {"Peak": pytest.approx(0.55)}
    assert metric.summarize("average") == metric.summarize("Peak")
    with pytest.raises(KeyError):
        metric.summarize("Sim")
    stream = io.StringIO()
    metric.write_stats(stream)
    assert stream.getvalue() == "Peak (max |x|, linear): 0.5500\na 0.9000\nb 0.2000\n"
    metric.clear()
    assert metric.num_scored == 0 and metric.ids == []
    assert math.isnan(mean_or_nan([])) and mean_or_nan(x for x in (1.0, 2.0)) == 1.5
