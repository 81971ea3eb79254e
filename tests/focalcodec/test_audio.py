"""Audio files and waveform lengths (focalcodec/audio.py): any rate and channel count in, mono at the
asked rate out; WAVs written atomically; the length conventions of padded batches."""

import numpy as np
import pytest
import soundfile as sf
import torch

from focalcodec.audio import (
    AUDIO_SUFFIXES,
    absolute_lengths,
    audio_info,
    fit_length,
    load_audio,
    read_audio,
    resample,
    write_wav,
)


def tone(seconds: float, rate: int, channels: int = 1) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    wave = 0.5 * np.sin(2 * np.pi * 440 * t).astype(np.float32)
    return np.stack([wave * (c + 1) / channels for c in range(channels)], axis=1)


@pytest.mark.parametrize(
    ("suffix", "rate", "channels"), [(".wav", 24000, 2), (".flac", 22050, 1), (".ogg", 44100, 2)]
)
def test_any_rate_and_channel_count_is_read_as_mono_at_the_asked_rate(tmp_path, suffix, rate, channels):
    path = tmp_path / f"a{suffix}"
    data = tone(0.5, rate, channels)
    sf.write(path, data, rate)
    assert suffix in AUDIO_SUFFIXES
    info = audio_info(path)
    assert (info.sample_rate, info.num_samples, info.channels) == (rate, len(data), channels)
    sig, read_info = read_audio(path)
    assert read_info == info and sig.shape == (len(data),)
    tolerance = 1e-4 if suffix != ".ogg" else 0.05  # ogg is lossy
    assert np.allclose(sig.numpy(), data.mean(axis=1), atol=tolerance)  # channel average
    assert load_audio(path, 16000).shape == (8000,)
    assert torch.equal(resample(sig, rate, rate), sig)


def test_empty_and_unreadable_files_are_errors(tmp_path):
    sf.write(tmp_path / "empty.wav", np.zeros((0, 1), dtype=np.float32), 16000)
    (tmp_path / "text.wav").write_text("not audio")
    for name in ("empty.wav", "text.wav"):
        with pytest.raises(Exception):  # noqa: B017 (soundfile raises several types)
            load_audio(tmp_path / name, 16000)
    with pytest.raises(ValueError, match="no audio samples"):
        audio_info(tmp_path / "empty.wav")


def test_write_wav_clips_and_leaves_no_partial_file(tmp_path):
    write_wav(tmp_path / "sub" / "out.wav", torch.tensor([0.5, 2.0, -3.0]), 16000, subtype="FLOAT")
    data, rate = sf.read(tmp_path / "sub" / "out.wav", dtype="float32")
    assert rate == 16000 and data.tolist() == [0.5, 1.0, -1.0]
    assert [path.name for path in (tmp_path / "sub").iterdir()] == ["out.wav"]


def test_fit_length_cuts_or_repeats_the_last_sample():
    sig = torch.tensor([[1.0, 2.0, 3.0]])
    assert fit_length(sig, 2).tolist() == [[1.0, 2.0]]
    assert fit_length(sig, 5).tolist() == [[1.0, 2.0, 3.0, 3.0, 3.0]]
    assert fit_length(sig[0], 4).tolist() == [1.0, 2.0, 3.0, 3.0]


def test_absolute_lengths_of_a_padded_batch():
    assert absolute_lengths(torch.tensor([1.0, 0.5, 0.01]), 3, 10) == [10, 5, 1]  # at least 1
    assert absolute_lengths(None, 2, 7) == [7, 7]
    with pytest.raises(ValueError, match="2 entries for a batch of 3"):
        absolute_lengths(torch.ones(2), 3, 10)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("from_rate", "to_rate"), [(24000, 16000), (16000, 24000), (44100, 16000)])
def test_resample_is_torchaudios_with_its_kernel_made_once(dtype, from_rate, to_rate):
    import torchaudio.functional as AF

    sig = torch.randn(2, 5000, dtype=dtype, generator=torch.Generator().manual_seed(0))
    for _ in range(2):  # the second call uses the kernel the first one made
        resampled = resample(sig, from_rate, to_rate)
        assert resampled.dtype == dtype and torch.equal(resampled, AF.resample(sig, from_rate, to_rate))
