"""UTMOS and RefUTMOS (utils/metrics/utmos.py): a local SpeechMOS clone, the model shared by both, length
masking and explicit checkpoints."""

import pytest
from helpers.metric_signals import pad_batch, tone

from utils.metrics import UTMOS, RefUTMOS

pytest_plugins = ("helpers.metric_models",)


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
    assert utmos.num_scored == ref_utmos.num_scored == 3
    ref_utmos.clear()
    assert ref_utmos.num_scored == 0 and utmos.num_scored == 3 and ref_utmos.load() is model
    # The weights come from the entry point's own file, or from an explicit checkpoint.
    other = UTMOS(source=str(speechmos_dir), checkpoint=str(speechmos_dir / "other.pt"))
    other.append(["a"], items[0][None])
    assert other.scores[0] == pytest.approx(single.scores[0] + 0.5, abs=1e-5)
