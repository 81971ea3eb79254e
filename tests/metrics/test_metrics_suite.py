"""QualityMetrics (utils/metrics/suite.py): primary labels with local models, per-utterance stats, explicit
'unavailable' offline, and the offline fallbacks on real LibriSpeech speech under their own labels (how
a new metric joins the suite is tested with the registry, in test_metrics_registry.py)."""

import io
import logging

import pytest
import torch
from helpers.metric_signals import pad_batch, read, tone

from utils.metrics import QualityMetrics

pytest_plugins = ("helpers.metric_models",)


def test_suite_with_local_models_reports_primary_labels(speechmos_dir, whisper_dir, wavlm_sv_dir, caplog):
    suite = QualityMetrics.from_config(
        {
            "sample_rate": 24000,
            "utmos_source": str(speechmos_dir),
            "whisper_source": str(whisper_dir),
            "sv_source": str(wavlm_sv_dir),
        }
    )
    hyp, lens = pad_batch([tone(0.9, 220), tone(0.6, 330, seed=1)])
    ref, _ = pad_batch([tone(0.9, 230, seed=2), tone(0.6, 340, seed=3)])
    with caplog.at_level(logging.WARNING):
        suite.append(["a", "b"], hyp, ref, lens)
    stats = suite.summarize()
    assert set(stats) == {"UTMOS", "RefUTMOS", "dWER", "dCER", "Sim"} and not suite.unavailable
    assert all(isinstance(v, float) for v in stats.values()) and "unavailable" not in caplog.text
    assert suite.sources()["dWER"] == str(whisper_dir) and suite.sources()["Sim"] == str(wavlm_sv_dir)
    assert "UTMOS: " in suite.report()
    # UTMOS and RefUTMOS share one model; the settings stay readable as the constructor's arguments
    assert suite.metrics["utmos"].loader is suite.metrics["ref_utmos"].loader
    assert suite.sample_rate == suite.metrics["sim"].sample_rate == 24000 and suite.sv_source == str(
        wavlm_sv_dir
    )
    stream = io.StringIO()
    suite.write_stats(stream)
    text = stream.getvalue()
    assert text.startswith(suite.report()) and text.count("\nb ") == 3  # UTMOS, RefUTMOS, Sim per utterance
    assert "\ndWER " in text and "\n  hyp: " in text and "RefUTMOS (" in text and "Sim (" in text
    suite.clear()  # nothing scored: nothing reported
    assert suite.summarize() == {} and suite.sources() == {} and suite.report() == "\n"


def test_suite_offline_without_fallback_reports_unavailable(offline, caplog):
    suite = QualityMetrics(fallback=False, cache_dir=str(offline))
    signal = tone(0.5, 220)[None]
    with caplog.at_level(logging.WARNING):
        suite.append(["a"], signal, signal)
        suite.append(["b"], signal, signal)  # no second warning, no retry
    assert suite.summarize() == {}
    assert set(suite.unavailable) == {"UTMOS", "RefUTMOS", "dWER/dCER", "Sim"}
    assert "network unreachable (simulated)" in suite.unavailable["UTMOS"]
    warnings = [r.getMessage() for r in caplog.records if r.name == "utils.metrics.suite"]
    assert len(warnings) == 4 and all("unavailable" in w for w in warnings)
    assert any("pass utmos_source=<local SpeechMOS clone>" in w for w in warnings)
    assert sum("not reported (fallback disabled)" in w for w in warnings) == 3 and suite.replaced == {}
    assert any("dWER/dCER unavailable" in w and "not reported (no offline fallback)" in w for w in warnings)


@pytest.mark.slow
def test_suite_offline_falls_back_on_real_speech(offline, caplog):
    clean = [read("84-121123-0021"), read("84-121123-0023")]
    hyp, lens = pad_batch(
        [c + 0.02 * torch.randn(c.shape, generator=torch.Generator().manual_seed(1)) for c in clean]
    )
    ref, _ = pad_batch(clean)
    suite = QualityMetrics(cache_dir=str(offline))
    with caplog.at_level(logging.WARNING):
        suite.append(["0021", "0023"], hyp, ref, lens)
    stats = suite.summarize()
    expected = {f"{p}-{f}" for p in ("DNSMOS", "RefDNSMOS") for f in ("OVRL", "SIG", "BAK")} | {
        "Sim-Resemblyzer"
    }
    assert set(stats) == expected  # never under the primary names
    assert not {"UTMOS", "RefUTMOS", "Sim", "dWER", "dCER"} & set(stats)
    assert stats["RefDNSMOS-OVRL"] > stats["DNSMOS-OVRL"] and 0.0 < stats["Sim-Resemblyzer"] <= 1.0
    assert set(suite.unavailable) == {"UTMOS", "RefUTMOS", "dWER/dCER", "Sim"}
    assert "using DNSMOS (speechmos) instead" in caplog.text and "using Sim-Resemblyzer" in caplog.text
    assert suite.sources()["DNSMOS-OVRL"].startswith("speechmos") and "unavailable" in suite.report()
    assert suite.replaced == {"utmos": "dnsmos", "ref_utmos": "ref_dnsmos", "sim": "sim_resemblyzer"}
    assert suite.requested == ["utmos", "ref_utmos", "dwer", "sim"]


@pytest.mark.slow
def test_a_fallback_requested_too_is_reported_once_under_its_own_name(offline, caplog):
    suite = QualityMetrics(metrics="utmos, dnsmos", cache_dir=str(offline))
    signal = tone(0.5, 220)[None]
    with caplog.at_level(logging.WARNING):
        suite.append(["a"], signal, signal)
    assert "DNSMOS was requested too and is reported under its own name" in caplog.text
    assert (
        suite.replaced == {}
        and set(suite.unavailable) == {"UTMOS"}
        and suite.metrics["dnsmos"].num_scored == 1
    )
    assert set(suite.summarize()) == {"DNSMOS-OVRL", "DNSMOS-SIG", "DNSMOS-BAK"}


def test_signal_metrics_give_per_utterance_scores_and_directions():
    clean = read("84-121123-0000")
    suite = QualityMetrics(metrics="pesq_wb, stoi, mel_distance, dwer", whisper_language="ja")
    assert suite.metrics["dwer"].language == "ja" and suite.metrics["dwer"].character_level
    del suite.metrics["dwer"]  # no Whisper here: only the settings reach it
    suite.append(["a", "b"], torch.stack([clean, 0.5 * clean]), torch.stack([clean, clean]))
    rows = suite.utterance_scores()
    assert [(row.id, row.metric) for row in rows] == [
        (utt, label) for label in ("PESQ-WB", "STOI", "MelDist") for utt in ("a", "b")
    ]
    means = {label: sum(row.value for row in rows if row.metric == label) / 2 for label in suite.summarize()}
    assert suite.summarize() == pytest.approx(means)
    assert suite.lower_better() == {"PESQ-WB": False, "STOI": False, "MelDist": True}
