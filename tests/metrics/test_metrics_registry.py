"""The metric registry (utils/metrics/registry.py): every known key has a complete entry, a fallback is
never reported under the primary label, broken entries are refused, and a new metric (a tiny class and
one entry, registered here) runs through QualityMetrics with no other change."""

import logging

import pytest
import torch

from utils.evaluation import QUALITY_ONLY
from utils.metrics import QualityMetrics
from utils.metrics.common import (
    LazyModel,
    MetricUnavailableError,
    ModelMetric,
    UtteranceScores,
    prepare_items,
)
from utils.metrics.registry import (
    DEFAULT_METRICS,
    REGISTRY,
    SIGNALS,
    Fallback,
    MetricSettings,
    MetricSpec,
    check_registry,
    known_metrics,
    quality_only_metrics,
    register,
    resolve_metrics,
)

# key: (name, signals, fallback key, offline hint mentions, model sibling, default)
EXPECTED = {
    "utmos": ("UTMOS", "hyp", "dnsmos", "utmos_source", "ref_utmos", True),
    "ref_utmos": ("RefUTMOS", "ref", "ref_dnsmos", "utmos_source", "utmos", True),
    "dwer": ("dWER/dCER", "pair", None, "whisper_source", None, True),
    "sim": ("Sim", "pair", "sim_resemblyzer", "sv_source", None, True),
    "dnsmos": ("DNSMOS", "hyp", None, None, "ref_dnsmos", False),
    "ref_dnsmos": ("RefDNSMOS", "ref", None, None, "dnsmos", False),
    "sim_resemblyzer": ("Sim-Resemblyzer", "pair", None, None, None, False),
    "pesq_wb": ("PESQ-WB", "pair", None, None, None, False),
    "pesq_nb": ("PESQ-NB", "pair", None, None, None, False),
    "stoi": ("STOI", "pair", None, None, None, False),
    "estoi": ("eSTOI", "pair", None, None, None, False),
    "mel_distance": ("MelDist", "pair", None, None, None, False),
    "stft_distance": ("STFTDist", "pair", None, None, None, False),
    "f0": ("F0", "pair", None, None, None, False),
    "plcmos": ("PLCMOS", "hyp", None, None, None, False),
}
SETTINGS = MetricSettings(sample_rate=24000, utmos_source="/nowhere/SpeechMOS", cache_dir="/nowhere/hf")


def test_every_known_key_has_a_complete_entry():
    assert known_metrics() == tuple(EXPECTED) and not check_registry()
    for key, (name, signals, fallback, hint, sibling, default) in EXPECTED.items():
        spec = REGISTRY[key]
        assert (spec.key, spec.name, spec.signals) == (key, name, signals)
        assert (spec.shares_model_with, spec.default) == (sibling, default)
        assert (spec.fallback and spec.fallback.key) == fallback
        if fallback is not None:  # the description names the fallback, under its own name
            assert spec.fallback.description.startswith(REGISTRY[fallback].name + " (")
            assert REGISTRY[fallback].offline_hint is None  # a fallback needs no network
        assert (spec.offline_hint and hint in spec.offline_hint and "offline" in spec.offline_hint) or (
            hint is None and spec.offline_hint is None
        )
        metric = spec.create(SETTINGS, {})  # built lazily: nothing is loaded
        assert isinstance(metric, ModelMetric) and metric.num_scored == 0 and metric.sample_rate == 24000
        assert metric.model_id and metric.summarize()  # its labels, NaN before any data
    assert DEFAULT_METRICS == ("utmos", "ref_utmos", "dwer", "sim")
    # the metrics of the evaluation table's reference row
    assert QUALITY_ONLY == quality_only_metrics() == ("utmos", "dnsmos", "plcmos")


def test_entries_build_from_the_settings_and_share_models_with_siblings():
    built: dict[str, ModelMetric] = {}
    for key in REGISTRY:
        built[key] = REGISTRY[key].create(SETTINGS, built)
    assert (
        built["utmos"].loader is built["ref_utmos"].loader and "/nowhere/SpeechMOS" in built["utmos"].model_id
    )
    assert built["dnsmos"].loader is built["ref_dnsmos"].loader
    assert built["dwer"].model_id == SETTINGS.whisper_source and built["sim"].model_id == SETTINGS.sv_source
    alone = REGISTRY["ref_utmos"].create(SETTINGS, {})
    assert alone.loader is not built["utmos"].loader
    hyp, ref = torch.zeros(1, 10), torch.ones(1, 10)
    assert REGISTRY["utmos"].inputs(hyp, ref) == (hyp,) and REGISTRY["ref_utmos"].inputs(hyp, ref) == (ref,)
    assert REGISTRY["sim"].inputs(hyp, ref) == (hyp, ref)


def test_a_fallback_is_never_reported_under_the_primary_label():
    for spec in REGISTRY.values():
        if spec.fallback is None:
            continue
        primary = set(spec.create(SETTINGS, {}).summarize())
        fallback = set(REGISTRY[spec.fallback.key].create(SETTINGS, {}).summarize())
        assert primary and fallback and not primary & fallback, spec.key
        assert spec.name not in fallback


def test_keys_are_resolved_and_unknown_ones_refused():
    assert resolve_metrics("UTMOS, sim sim") == ["utmos", "sim"]
    assert resolve_metrics(["dnsmos", " ref_dnsmos "]) == ["dnsmos", "ref_dnsmos"]
    with pytest.raises(ValueError, match="unknown metrics \\['pesq'\\]; known: utmos, ref_utmos"):
        resolve_metrics("utmos,pesq")


# --------------------------------------------------------------------------------------------------------
# New metrics: one class and one entry each
# --------------------------------------------------------------------------------------------------------


class Peak(UtteranceScores):
    """A new metric with no model: each item's peak amplitude within its true length."""

    score_kind = "linear"

    def __init__(self, sample_rate: int = 16000, label: str = "Peak") -> None:
        self.sample_rate, self.label, self.model_id = sample_rate, label, "max |x|"
        self.clear()

    def append(self, ids: list[str], sig: torch.Tensor, lens: torch.Tensor | None = None) -> None:
        self.scores.extend(item.abs().max().item() for item in prepare_items(sig, lens, self.sample_rate))
        self.ids.extend(ids)


class PeakGap(UtteranceScores):
    """A pair metric: |peak(hyp) - peak(ref)|; its model (``remote``) may be out of reach."""

    def __init__(self, sample_rate: int = 16000, label: str = "Gap", remote: bool = False) -> None:
        self.sample_rate, self.label = sample_rate, label
        self.loader = LazyModel(self._unreachable if remote else lambda: "local", label + " model")
        self.model_id = self.loader.model_id
        self.clear()

    def _unreachable(self):
        raise MetricUnavailableError(self.label, "hub://gap", "network unreachable (simulated)")

    def append(self, ids, hyp, ref, lens=None) -> None:
        self.load()
        peaks = [
            [item.abs().max().item() for item in prepare_items(s, lens, self.sample_rate)] for s in (hyp, ref)
        ]
        self.scores.extend(abs(h - r) for h, r in zip(*peaks, strict=True))
        self.ids.extend(ids)


@pytest.fixture
def registered():
    """``register`` for the test, the registry restored afterwards."""
    added: list[str] = []

    def add(*specs: MetricSpec) -> None:
        register(*specs)
        added.extend(spec.key for spec in specs)

    yield add
    for key in added:
        del REGISTRY[key]


@pytest.mark.parametrize("signals", ["hyp", "ref"])
def test_a_new_metric_is_one_class_and_one_entry(registered, signals, tmp_path):
    registered(MetricSpec("peak", "Peak", lambda s, _: Peak(s.sample_rate), signals))
    assert "peak" in known_metrics() and ("peak" in quality_only_metrics()) == (signals == "hyp")
    suite = QualityMetrics.from_config({"sample_rate": 16000, "metrics": ["peak"]})
    hyp = torch.tensor([[0.5, -0.25, 0.0, 0.0], [0.1, -0.2, 0.3, 0.9]])  # b's last sample is padding
    ref = hyp / 2
    suite.append(["a", "b"], hyp, ref, torch.tensor([1.0, 0.75]))
    peaks = [0.5, 0.3] if signals == "hyp" else [0.25, 0.15]
    assert suite.metrics["peak"].scores == pytest.approx(peaks)
    assert suite.summarize() == {"Peak": pytest.approx(sum(peaks) / 2)}
    assert suite.sources() == {"Peak": "max |x|"}
    assert suite.summarize("Peak") == pytest.approx(sum(peaks) / 2)
    assert suite.report().startswith("Peak: 0.") and "[max |x|]" in suite.report()
    suite.write_stats(tmp_path / "stats.txt")
    lines = (tmp_path / "stats.txt").read_text().splitlines()
    assert lines[:2] == [suite.report().strip(), ""] and lines[2].startswith("Peak (max |x|, linear): ")
    assert lines[3:] == [f"a {peaks[0]:.4f}", f"b {peaks[1]:.4f}"]
    suite.clear()
    assert suite.summarize() == {} and not suite.unavailable


def test_a_new_metric_falls_back_to_its_own_offline_entry(registered, caplog):
    gap = MetricSpec(
        "gap", "Gap", lambda s, _: PeakGap(s.sample_rate, remote=True), "pair",
        Fallback("gap_offline", "Gap-Offline (local)"), "pass gap_source=<folder> to use it offline",
    )  # fmt: skip
    offline = MetricSpec(
        "gap_offline", "Gap-Offline", lambda s, _: PeakGap(s.sample_rate, "Gap-Offline"), "pair"
    )
    registered(gap, offline)
    hyp, ref = torch.tensor([[0.5, 0.1]]), torch.tensor([[0.2, 0.1]])
    for fallback in (True, False):
        suite = QualityMetrics(metrics="gap", fallback=fallback)
        with caplog.at_level(logging.WARNING):
            suite.append(["a"], hyp, ref)
            suite.append(["b"], ref, ref)
        assert suite.unavailable == {"Gap": "could not load hub://gap (network unreachable (simulated))"}
        # never under the primary label
        assert "Gap" not in suite.summarize() and "Gap" not in suite.sources()
        if fallback:
            assert suite.summarize() == {"Gap-Offline": pytest.approx(0.15)}
            assert suite.replaced == {"gap": "gap_offline"}
            assert suite.sources() == {"Gap-Offline": "Gap-Offline model"}
            hint = "pass gap_source=<folder> to use it offline"
            assert f"using Gap-Offline (local) instead; {hint}" in caplog.text
        else:
            assert suite.summarize() == {} and suite.replaced == {}
            assert "not reported (fallback disabled); pass gap_source=<folder>" in caplog.text
        assert caplog.text.count("Gap unavailable") == 1  # warned once, never retried
        assert "Gap: unavailable (could not load hub://gap" in suite.report()
        caplog.clear()


def test_broken_entries_are_refused(registered):
    build = lambda s, _: Peak(s.sample_rate)  # noqa: E731
    before = dict(REGISTRY)
    with pytest.raises(ValueError, match="'utmos' is already registered"):
        register(MetricSpec("utmos", "UTMOS", build, "hyp"))
    with pytest.raises(ValueError, match="fallback 'nowhere' is not another registered metric"):
        register(MetricSpec("peak", "Peak", build, "hyp", Fallback("nowhere", "Nowhere")))
    with pytest.raises(ValueError, match="already replaces 'utmos'"):
        register(MetricSpec("peak", "Peak", build, "hyp", Fallback("dnsmos", "DNSMOS (speechmos)")))
    with pytest.raises(ValueError, match="model sibling 'utmos' does not name it back"):
        register(MetricSpec("peak", "Peak", build, "hyp", shares_model_with="utmos"))
    with pytest.raises(ValueError, match="signals must be one of"):
        MetricSpec("peak", "Peak", build, "both")
    with pytest.raises(ValueError, match="lower case"):
        MetricSpec("Peak", "Peak", build, "hyp")
    assert before == REGISTRY and set(SIGNALS) == {"hyp", "ref", "pair"}
    registered(MetricSpec("peak", "Peak", build, "hyp"))
    assert check_registry({**REGISTRY, "copy": REGISTRY["peak"]}) == [
        "copy: registered under another key than its own (peak)"
    ]
