"""Speaker similarity (utils/metrics/speaker_similarity.py): a tiny local WavLM-SV folder, replicate
padding of short items, and length masking."""

import warnings

import pytest
import torch
from helpers.metric_signals import pad_batch, tone

from utils.metrics import SpeakerSimilarity
from utils.metrics.speaker_similarity import MIN_SAMPLES, replicate_pad

pytest_plugins = ("helpers.metric_models",)


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
    assert metric.num_scored == 3
    scores = list(metric.scores)
    metric.clear()
    metric.append(["a", "b", "c"], hyp, ref)  # scoring the padding too changes the figures
    assert metric.scores[0] == pytest.approx(scores[0]) and metric.scores[1:] != pytest.approx(scores[1:])
    metric.clear()
    assert metric.num_scored == 0
    metric.append(["same"], hyp[:1], hyp[:1], lens[:1])
    assert metric.summarize("Sim") == pytest.approx(1.0, abs=1e-5)
