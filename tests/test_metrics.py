"""Evaluation metrics: dWER/dCER math, length masking, the loading paths (tiny models saved locally in the
real formats), the offline path, and the offline fallbacks on real LibriSpeech speech."""

import json
import logging
import math
import time
import warnings
from pathlib import Path

import pytest
import soundfile as sf
import torch

import utils.metrics.common as common
from utils.metrics import (
    DNSMOS,
    DWER,
    UTMOS,
    MetricUnavailableError,
    QualityMetrics,
    RefUTMOS,
    ResemblyzerSimilarity,
    SpeakerSimilarity,
)
from utils.metrics.common import prepare_items, unreachable
from utils.metrics.dwer import error_counts
from utils.metrics.speaker_similarity import MIN_SAMPLES, replicate_pad

SPEECH = Path(__file__).resolve().parent / "data" / "real-speech"  # LibriSpeech dev-clean clips (SOURCES.md)


def read(name: str) -> torch.Tensor:
    audio, rate = sf.read(SPEECH / f"{name}.flac", dtype="float32")
    assert rate == 16000
    return torch.from_numpy(audio)


def pad_batch(items: list[torch.Tensor], garbage: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, N) batch and relative lengths; the padding is loud noise, so any padding that leaks shows."""
    length = max(item.shape[-1] for item in items)
    generator = torch.Generator().manual_seed(123)
    batch = (
        torch.rand(len(items), length, generator=generator) - 0.5
        if garbage
        else torch.zeros(len(items), length)
    )
    for i, item in enumerate(items):
        batch[i, : item.shape[-1]] = item
    lens = torch.tensor([item.shape[-1] / length for item in items])
    return batch, lens


def tone(seconds: float, freq: float, seed: int = 0) -> torch.Tensor:
    t = torch.arange(int(seconds * 16000)) / 16000
    noise = 0.01 * torch.randn(t.shape, generator=torch.Generator().manual_seed(seed))
    return 0.3 * torch.sin(2 * math.pi * freq * t) * (1 + 0.5 * torch.sin(2 * math.pi * 3 * t)) + noise


# --------------------------------------------------------------------------------------------------------
# Tiny local models in the real formats
# --------------------------------------------------------------------------------------------------------

FAKE_HUBCONF = '''
"""A stand-in for SpeechMOS's hubconf: same entry point and call signature, tiny model."""
import os

import torch

dependencies = ["torch"]
HERE = os.path.dirname(os.path.abspath(__file__))


class FakeUTMOS(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.offset = torch.nn.Parameter(torch.zeros(()))
        self.seen = []

    def forward(self, wave, sr):
        self.seen.append((tuple(wave.shape), sr))
        energy = wave.pow(2).mean(dim=-1).clamp_min(1e-10).log10()
        return (3.0 + self.offset + 0.1 * energy).clamp(1.0, 5.0)


def utmos22_strong(progress=True, pretrained=True):
    with open(os.path.join(HERE, "loads.txt"), "a") as log:
        log.write("load\\n")
    model = FakeUTMOS()
    if pretrained:
        model.load_state_dict(torch.load(os.path.join(HERE, "weights.pt")))
    return model.eval()
'''


@pytest.fixture(scope="module")
def speechmos_dir(tmp_path_factory) -> Path:
    """A local 'SpeechMOS clone': hubconf.py with ``utmos22_strong`` and its weight file."""
    folder = tmp_path_factory.mktemp("SpeechMOS")
    (folder / "hubconf.py").write_text(FAKE_HUBCONF)
    torch.save({"offset": torch.tensor(0.5)}, folder / "weights.pt")
    torch.save({"offset": torch.tensor(1.0)}, folder / "other.pt")
    return folder


@pytest.fixture(scope="module")
def whisper_dir(tmp_path_factory) -> Path:
    """A tiny random Whisper (model, generation config, feature extractor, byte-level BPE tokenizer with
    Whisper's special tokens and a spelling ``normalizer.json``) saved with ``save_pretrained``."""
    from tokenizers import pre_tokenizers
    from transformers import (
        AddedToken,
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizer,
    )
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    folder = tmp_path_factory.mktemp("whisper-tiny-random")
    vocab = {char: i for i, char in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    tokenizer = WhisperTokenizer(vocab=vocab, merges=[])
    specials = ["<|endoftext|>", "<|startoftranscript|>", *(f"<|{code}|>" for code in LANGUAGES)]
    specials += ["<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>"]
    specials += ["<|notimestamps|>"]
    tokenizer.add_tokens(
        [AddedToken(t, special=True, normalized=False) for t in specials], special_tokens=True
    )
    WhisperProcessor(feature_extractor=WhisperFeatureExtractor(), tokenizer=tokenizer).save_pretrained(folder)
    (folder / "normalizer.json").write_text(json.dumps({"colour": "color"}))  # as the hub repos ship it

    ids = tokenizer.convert_tokens_to_ids
    eot, sot = ids("<|endoftext|>"), ids("<|startoftranscript|>")
    config = WhisperConfig(
        vocab_size=len(tokenizer), d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, num_mel_bins=80,
        max_source_positions=1500, max_target_positions=64, decoder_start_token_id=sot, pad_token_id=eot,
        bos_token_id=eot, eos_token_id=eot,
    )  # fmt: skip
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        decoder_start_token_id=sot, eos_token_id=eot, pad_token_id=eot, bos_token_id=eot, max_length=16,
        is_multilingual=True, lang_to_id={f"<|{code}|>": ids(f"<|{code}|>") for code in LANGUAGES},
        task_to_id={"translate": ids("<|translate|>"), "transcribe": ids("<|transcribe|>")},
        no_timestamps_token_id=ids("<|notimestamps|>"), suppress_tokens=[], begin_suppress_tokens=[eot],
    )  # fmt: skip
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def wavlm_sv_dir(tmp_path_factory) -> Path:
    """A tiny random ``WavLMForXVector`` (real conv stack and TDNN, narrow) via save_pretrained."""
    from transformers import WavLMConfig, WavLMForXVector

    folder = tmp_path_factory.mktemp("wavlm-sv-tiny-random")
    config = WavLMConfig(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, conv_dim=(8,) * 7,
        tdnn_dim=(8, 8, 8, 8, 16), xvector_output_dim=8, num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4, initializer_range=0.2,
    )  # fmt: skip
    torch.manual_seed(0)
    WavLMForXVector(config).save_pretrained(folder)
    return folder


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No network: every probe fails at once, the torch hub cache is empty."""
    monkeypatch.setattr(common, "unreachable", lambda url, timeout=0: "network unreachable (simulated)")
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "torch_hub"))
    return tmp_path / "hf_cache"


# --------------------------------------------------------------------------------------------------------
# dWER / dCER math
# --------------------------------------------------------------------------------------------------------


def test_error_counts_on_known_pairs():
    words = error_counts(["the", "cat", "sat", "on", "a", "mat"], ["the", "cat", "sat", "on", "the", "mat"])
    assert (words.substitutions, words.deletions, words.insertions, words.reference_length) == (1, 0, 0, 6)
    words = error_counts(["a", "x", "c", "d"], ["a", "b", "c"])
    assert (words.substitutions, words.deletions, words.insertions, words.reference_length) == (1, 0, 1, 3)
    words = error_counts(["a"], ["a", "b", "c"])
    assert (words.deletions, words.edits, words.rate()) == (2, 2, pytest.approx(200 / 3))
    chars = error_counts(["abd", "c"], ["ab", "c"], chars=True)  # "abd c" vs "ab c": the space counts
    assert (chars.insertions, chars.edits, chars.reference_length) == (1, 1, 4)


def test_dwer_is_corpus_level_and_handles_empty_transcripts():
    metric = DWER()
    metric.add_normalized(["u1", "u2"], ["a b c d", "y"], ["a b c d", "x"])
    assert metric.summarize() == {"dWER": pytest.approx(20.0), "dCER": pytest.approx(100 * 1 / 8)}  # not 50%
    # Empty transcripts have zero words (the original counted "" as one word).
    metric.add_normalized(["u3", "u4"], ["", "p q"], ["", ""])
    assert metric.words.reference_length == 5 and metric.words.insertions == 2
    assert metric.summarize("dWER") == pytest.approx(100 * 3 / 5)
    metric.clear()
    metric.add_normalized(["e"], [""], [""])
    assert metric.summarize() == {"dWER": 0.0, "dCER": 0.0}
    metric.clear()
    metric.add_normalized(["e"], ["hallucination"], [""])
    assert metric.summarize("dWER") == math.inf


def test_whisper_english_normaliser_from_local_tokenizer(whisper_dir):
    metric = DWER(source=str(whisper_dir))
    metric.add_transcripts(["u"], ["Mr. Smith's colour, 2 dollars!"], ["mister smith's color two dollars"])
    assert metric.utterances[0]["hyp"] == metric.utterances[0]["ref"] == "mister smith is color $2"
    assert metric.summarize() == {"dWER": 0.0, "dCER": 0.0}


# --------------------------------------------------------------------------------------------------------
# Loading from local folders, length masking
# --------------------------------------------------------------------------------------------------------


def test_prepare_items_cuts_then_resamples():
    batch = torch.randn(2, 2400)
    items = prepare_items(batch, torch.tensor([1.0, 0.5]), 24000)
    assert [item.shape[-1] for item in items] == [1600, 800]
    with pytest.raises(ValueError, match="lens"):
        prepare_items(batch, batch, 16000)  # a signal passed where lens belongs


def test_utmos_local_clone_shared_model_and_length_masking(speechmos_dir):
    items = [tone(1.0, 220), tone(0.6, 330, seed=1), tone(0.6, 440, seed=2)]
    padded, lens = pad_batch(items)
    utmos = UTMOS(source=str(speechmos_dir))
    ref_utmos = RefUTMOS(source=str(speechmos_dir), share_with=utmos)
    utmos.append(["a", "b", "c"], padded, lens)
    ref_utmos.append(["a", "b", "c"], padded, lens)
    model = utmos.load()
    # Cut to true lengths and grouped by length: never a padded sample, two model calls per batch.
    assert sorted(model.seen[:2]) == [((1, 16000), 16000), ((2, 9600), 16000)]
    assert ref_utmos.load() is model and (speechmos_dir / "loads.txt").read_text().count("load") == 1
    single = UTMOS(model=model)
    for i, item in enumerate(items):
        single.append([str(i)], item[None])
    assert utmos.scores == pytest.approx(single.scores, abs=1e-6)
    unmasked = UTMOS(model=model)
    unmasked.append(["a", "b", "c"], padded)  # what the original did: the padding is scored
    assert unmasked.scores[1:] != pytest.approx(single.scores[1:], abs=1e-3)
    assert 1.0 <= utmos.summarize("UTMOS") <= 5.0
    assert set(utmos.summarize()) == {"UTMOS"} and set(ref_utmos.summarize()) == {"RefUTMOS"}
    assert utmos.scores == ref_utmos.scores and ref_utmos.model_id == utmos.model_id
    # The weights come from the entry point's own file, or from an explicit checkpoint.
    other = UTMOS(source=str(speechmos_dir), checkpoint=str(speechmos_dir / "other.pt"))
    other.append(["a"], items[0][None])
    assert other.scores[0] == pytest.approx(single.scores[0] + 0.5, abs=1e-5)


def test_dwer_local_whisper_folder_and_length_masking(whisper_dir, tmp_path):
    items = [tone(1.0, 220), tone(0.5, 330, seed=1)]
    padded, lens = pad_batch(items)
    metric = DWER(source=str(whisper_dir))
    processor, model = metric.load()
    assert type(model).__name__ == "WhisperForConditionalGeneration" and processor.tokenizer is not None
    seen = []
    generate = model.generate
    model.generate = lambda features, **kwargs: seen.append(features.clone()) or generate(features, **kwargs)
    metric.append(["a", "b"], padded, padded, lens)
    metric.append(["a"], items[0][None], items[0][None])
    metric.append(["b"], items[1][None], items[1][None])
    torch.testing.assert_close(seen[0][[0, 1]], torch.cat([seen[1][:1], seen[2][:1]]))  # no padding seen
    assert seen[0].shape == (4, 80, 3000)  # hyp and ref transcribed in one batch, 30 s windows
    assert [u["hyp"] for u in metric.utterances[:2]] == [u["hyp"] for u in metric.utterances[2:]]
    assert metric.summarize() == {"dWER": 0.0, "dCER": 0.0}  # hyp == ref: same greedy transcripts
    metric.write_stats(tmp_path / "dwer.txt")
    text = (tmp_path / "dwer.txt").read_text()
    assert text.startswith("dWER 0.00%") and "audio beyond 30 s is not transcribed" in text
    assert text.count("\n  hyp: ") == 4


def test_speaker_similarity_local_wavlm_folder_and_length_masking(wavlm_sv_dir):
    items = [tone(0.8, 220), tone(0.5, 330, seed=1), tone(0.2, 440, seed=2)]  # the last is < 4880 samples
    refs = [tone(0.8, 250, seed=3), tone(0.5, 300, seed=4), tone(0.2, 500, seed=5)]
    hyp, lens = pad_batch(items)
    ref, _ = pad_batch(refs)
    metric = SpeakerSimilarity(source=str(wavlm_sv_dir))
    metric.append(["a", "b", "c"], hyp, ref, lens)
    model = metric.load()
    assert type(model).__name__ == "WavLMForXVector"
    with torch.no_grad():
        for i, (h, r) in enumerate(zip(items, refs, strict=True)):
            expected = torch.cosine_similarity(
                model(input_values=replicate_pad(h)[None]).embeddings,
                model(input_values=replicate_pad(r)[None]).embeddings,
            ).item()
            assert metric.scores[i] == pytest.approx(expected, abs=1e-5)
    assert replicate_pad(items[2]).shape[-1] == MIN_SAMPLES and replicate_pad(items[2])[-1] == items[2][-1]
    with torch.no_grad(), warnings.catch_warnings():  # why not the original's 4880: one TDNN frame,
        warnings.simplefilter("ignore")  # whose std in the statistics pooling is NaN
        assert model(input_values=replicate_pad(items[2], 4880)[None]).embeddings.isnan().all()
    assert all(-1.0 <= s <= 1.0 for s in metric.scores) and set(metric.summarize()) == {"Sim"}
    scores = list(metric.scores)
    metric.clear()
    metric.append(["a", "b", "c"], hyp, ref)  # scoring the padding too changes the figures
    assert metric.scores[0] == pytest.approx(scores[0]) and metric.scores[1:] != pytest.approx(scores[1:])
    metric.clear()
    metric.append(["same"], hyp[:1], hyp[:1], lens[:1])
    assert metric.summarize("Sim") == pytest.approx(1.0, abs=1e-5)


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


# --------------------------------------------------------------------------------------------------------
# Offline: fast, explicit 'unavailable', never a crash
# --------------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------------
# Offline fallbacks on real speech
# --------------------------------------------------------------------------------------------------------


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


@pytest.mark.slow
def test_dnsmos_clean_speech_beats_noisy_and_respects_lengths():
    names = ["84-121123-0021", "84-121123-0023", "84-121123-0028"]  # 4.7-4.8 s: one window each
    clean = [read(name) for name in names]
    generator = torch.Generator().manual_seed(0)
    noisy = []
    for c in clean:  # white noise at 5 dB SNR
        noise = torch.randn(c.shape, generator=generator)
        noisy.append(c + noise * c.norm() / noise.norm() / 10 ** (5 / 20))
    metric = DNSMOS()
    padded, lens = pad_batch(clean)
    metric.append(names, padded, lens)
    clean_stats = metric.summarize()
    clean_scores = list(metric.scores)
    metric.clear()
    for name, c in zip(names, clean, strict=True):
        metric.append([name], c[None])
    for single, batched in zip(metric.scores, clean_scores, strict=True):  # padded batch == unpadded items
        assert single == pytest.approx(batched)
    metric.clear()
    metric.append(names, *pad_batch(noisy))
    noisy_stats = metric.summarize()
    assert set(clean_stats) == {"DNSMOS-OVRL", "DNSMOS-SIG", "DNSMOS-BAK"}
    assert clean_stats["DNSMOS-OVRL"] > noisy_stats["DNSMOS-OVRL"] + 0.5
    assert clean_stats["DNSMOS-BAK"] > noisy_stats["DNSMOS-BAK"]
    assert all(1.0 <= v <= 5.0 for v in (*clean_stats.values(), *noisy_stats.values()))


@pytest.mark.slow
def test_resemblyzer_same_speaker_beats_different_speaker_and_respects_lengths():
    a, b, c = read("84-121123-0021"), read("84-121123-0023"), read("84-121123-0028")
    other = read("251-118436-0003")
    pairs = [(a, c), (b, c), (a, other), (b, other)]
    pairs = [(x[: min(len(x), len(y))], y[: min(len(x), len(y))]) for x, y in pairs]  # a pair shares lens
    hyp, lens = pad_batch([x for x, _ in pairs])
    ref, _ = pad_batch([y for _, y in pairs])
    metric = ResemblyzerSimilarity()
    metric.append(["84-84", "84-84'", "84-251", "84-251'"], hyp, ref, lens)
    same, different = metric.scores[:2], metric.scores[2:]
    assert min(same) > max(different) + 0.1
    single = ResemblyzerSimilarity()
    single.append(["84-84"], pairs[0][0][None], pairs[0][1][None])
    assert single.scores[0] == pytest.approx(same[0], abs=1e-5)
    assert set(metric.summarize()) == {"Sim-Resemblyzer"}
