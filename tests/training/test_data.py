"""The data pipeline (utils/training/data.py): training crops read alone from the feature cache and the audio
file have the distribution and alignment of crops cut from whole utterances in the training step; the original
mode's 16-bit audio (utils/corpus/audio.py)."""

import collections

import torch
from helpers.feature_cache_helpers import build, load, tiny_encoder, write_corpus
from speechbrain.dataio.dataset import DynamicItemDataset

from focalcodec.audio import as_written
from utils.training.crop import random_feature_crop
from utils.training.data import _audio_pipeline, add_cached_crops

FRAMES, HOP = 22, 320


def test_cached_crops_are_the_step_crops_read_alone(tmp_path):
    corpus = write_corpus(tmp_path)  # 24 kHz wavs, resampled to 16 kHz on load
    cache = build(tiny_encoder(), corpus, tmp_path / "cache")
    dataset = DynamicItemDataset({uttid: dict(entry) for uttid, entry in corpus.items()})
    add_cached_crops(dataset, cache, FRAMES, HOP, 16000)
    wholes = {uttid: load(entry["wav"]) for uttid, entry in corpus.items()}
    starts = collections.Counter()
    torch.manual_seed(0)
    for draw in range(150):
        for index, uttid in enumerate(corpus):
            if draw >= 10 and uttid != "utt2":
                continue  # then only the shortest utterance, for the distribution of its starts
            item = dataset[index]
            assert item["id"] == uttid and item["crop_feats"].shape == (FRAMES, 64)
            full = cache[uttid]
            start = next(
                s
                for s in range(len(full) - FRAMES + 1)
                if torch.equal(item["crop_feats"], full[s : s + FRAMES])
            )
            # frame i of the crop <-> samples [i * hop, (i + 1) * hop) of the whole resampled utterance
            whole = wholes[uttid][start * HOP : (start + FRAMES) * HOP]
            torch.testing.assert_close(item["crop_sig"], whole, rtol=0, atol=1e-6)
            starts[start] += uttid == "utt2"
    # Every valid start of the shortest utterance (utt2: 44 frames, 23 starts) is drawn, none past them
    shortest = {start for start, count in starts.items() if count}
    assert shortest == set(range(cache.num_frames("utt2") - FRAMES + 1))

    # The step crop of a cached batch draws from the same starts (uniform over 0 .. T - S per item)
    feats = cache["utt2"][None]
    sig = load(corpus["utt2"]["wav"])[None]
    lens = torch.tensor([(len(cache["utt2"]) - 0.5) / len(cache["utt2"])])
    step_starts = collections.Counter()
    for seed in range(400):
        torch.manual_seed(seed)
        crop, _ = random_feature_crop(feats, sig, lens, FRAMES, HOP)
        step_starts[next(s for s in range(23) if torch.equal(crop[0], feats[0, s : s + FRAMES]))] += 1
    assert set(step_starts) == set(shortest)


def is_16_bit(sig: torch.Tensor) -> bool:
    return torch.equal(sig * 32768, (sig * 32768).round())


def test_pcm16_audio_reads_what_a_16_bit_wav_holds(tmp_path):
    """pcm16_audio (the original mode): whole utterances and cached crops are the resampled audio rounded to
    16 bit by libsndfile, as the original's prepared copies held it; without it, the float samples."""
    corpus = write_corpus(tmp_path)  # 24 kHz: resampled to 16 kHz on load, so not 16-bit samples any more
    floats = load(corpus["utt0"]["wav"])
    rounded = as_written(floats).sig
    assert not is_16_bit(floats) and is_16_bit(rounded)
    for pcm16, want in ((False, floats), (True, rounded)):
        dataset = DynamicItemDataset({"utt0": dict(corpus["utt0"])})
        dataset.add_dynamic_item(_audio_pipeline(16000, pcm16=pcm16))
        dataset.set_output_keys(["sig"])
        assert torch.equal(dataset[0]["sig"], want)
    cache = build(tiny_encoder(), corpus, tmp_path / "cache")
    dataset = DynamicItemDataset({"utt0": dict(corpus["utt0"])})
    add_cached_crops(dataset, cache, FRAMES, HOP, 16000, pcm16=True)
    crop = dataset[0]["crop_sig"]
    starts = range(0, len(floats) - len(crop) + 1, HOP)  # libsndfile's rounding moves a sample < 1 LSB
    start = next(s for s in starts if torch.allclose(crop, floats[s : s + len(crop)], rtol=0, atol=1 / 32768))
    assert is_16_bit(crop) and not torch.equal(crop, floats[start : start + len(crop)])
