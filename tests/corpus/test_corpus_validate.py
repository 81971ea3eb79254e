"""utils/corpus/validate.py: validating one audio file (any format libsndfile reads) and finding files."""

import os
import struct

import numpy as np
import pytest
import soundfile as sf
from helpers.corpus_helpers import write_tone

from utils.corpus.validate import AUDIO_SUFFIXES, check_name, find_audio, printable, validate_audio

MP3 = pytest.mark.skipif("MP3" not in sf.available_formats(), reason="this libsndfile has no MP3 support")


def _wav_bytes(n_frames, data_size=None, subtype_code=1, bits=16, rate=16000):
    block = bits // 8
    data = bytes(n_frames * block)
    size = len(data) if data_size is None else data_size
    fmt = struct.pack("<HHIIHH", subtype_code, 1, rate, rate * block, block, bits)
    return (
        b"RIFF"
        + struct.pack("<I", min(36 + size, 0xFFFFFFFF))
        + b"WAVEfmt "
        + struct.pack("<I", 16)
        + fmt
        + b"data"
        + (struct.pack("<I", size) + data)
    )


def test_wav_cases(tmp_path):
    def check(name, content):
        path = tmp_path / name
        path.write_bytes(content)
        return validate_audio(str(path))

    info, reason, _ = check("ok.wav", _wav_bytes(1600))
    assert reason is None and info == {"frames": 1600, "sample_rate": 16000, "channels": 1}
    # Streaming writers (espeak-ng/sox to a pipe) put a placeholder size: not truncated.
    assert check("stream.wav", _wav_bytes(1600, data_size=0x7FFFF000))[1] is None
    assert check("ffmpeg.wav", _wav_bytes(1600, data_size=0xFFFFFFFF))[1] is None
    assert check("cut.wav", _wav_bytes(1600)[:-1000])[1] == "truncated"
    assert check("header_only.wav", _wav_bytes(1600)[:44])[1] == "truncated"
    assert check("empty_data.wav", _wav_bytes(0))[1] == "no_frames"
    assert check("short_header.wav", _wav_bytes(1600)[:30])[1] == "unreadable"
    assert check("zero.wav", b"")[1] == "empty_file"
    assert check("text.wav", b"hello\n")[1] == "not_audio"
    assert (
        check("appledouble.wav", b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + bytes(40))[1]
        == "not_audio"
    )

    nan = np.zeros(1600, dtype=np.float32)
    nan[100] = np.nan
    sf.write(str(tmp_path / "nan.wav"), nan, 16000, subtype="FLOAT")
    assert validate_audio(str(tmp_path / "nan.wav"))[1] == "non_finite"
    sf.write(str(tmp_path / "flac.wav"), np.zeros(1600), 16000, format="FLAC")  # FLAC named .wav: audio
    assert validate_audio(str(tmp_path / "flac.wav"))[1] is None

    os.symlink(tmp_path / "gone.wav", tmp_path / "broken.wav")
    assert validate_audio(str(tmp_path / "broken.wav"))[1] == "unreadable"
    (tmp_path / "folder.wav").mkdir()
    assert validate_audio(str(tmp_path / "folder.wav"))[1] == "unreadable"
    assert validate_audio(str(tmp_path / "never.wav")) == (None, "missing_file", "no such file")


@pytest.mark.parametrize(
    ("name", "write"),
    [
        ("a.flac", {}),
        ("a.ogg", {"format": "OGG", "subtype": "VORBIS"}),
        pytest.param("a.mp3", {"format": "MP3", "subtype": "MPEG_LAYER_III"}, marks=MP3),
        ("a.wav", {"subtype": "PCM_24"}),
    ],
)
@pytest.mark.parametrize(("rate", "channels"), [(22050, 1), (44100, 2)])
def test_other_formats_rates_and_channels(tmp_path, name, write, rate, channels):
    path = write_tone(tmp_path / name, seconds=1.5, rate=rate, channels=channels, **write)
    info, reason, detail = validate_audio(str(path))
    assert reason is None, detail
    assert (info["sample_rate"], info["channels"]) == (rate, channels)
    assert info["frames"] == pytest.approx(1.5 * rate, rel=0.01)
    # Cut in half: an error of the decoder (unreadable) or fewer frames than the header says (truncated).
    data = path.read_bytes()
    cut = tmp_path / f"cut_{name}"
    cut.write_bytes(data[: len(data) // 2])
    assert validate_audio(str(cut))[1] in ("truncated", "unreadable")
    # Text with an audio suffix (libsndfile tries to decode a .mp3 by its suffix, and fails).
    fake = tmp_path / f"fake_{name}"
    fake.write_text("not audio\n")
    _, reason, detail = validate_audio(str(fake))
    assert reason == ("unreadable" if name.endswith(".mp3") else "not_audio") and detail


@MP3
def test_truncated_mp3_is_truncated(tmp_path):
    path = write_tone(tmp_path / "a.mp3", seconds=2.0, rate=24000, format="MP3", subtype="MPEG_LAYER_III")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert validate_audio(str(path))[1] == "truncated"


def test_validation_only_reads(tmp_path):
    path = write_tone(tmp_path / "a.flac")
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    validate_audio(str(path))
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before
    assert sorted(os.listdir(tmp_path)) == ["a.flac"]


def test_find_audio(tmp_path):
    for name in ("b/x.WAV", "a/y.flac", "a/z.ogg", "a/w.mp3", "a/notes.txt", "c/v.opus", "skip/u.wav"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    os.symlink(tmp_path / "a", tmp_path / "b" / "loop")  # a link to a folder already visited
    os.symlink(tmp_path / "missing.wav", tmp_path / "b" / "broken.wav")
    found = [
        os.path.relpath(p, tmp_path) for p in find_audio(str(tmp_path), exclude=(str(tmp_path / "skip"),))
    ]
    assert found == ["a/w.mp3", "a/y.flac", "a/z.ogg", "b/broken.wav", "b/x.WAV"]
    assert [os.path.basename(p) for p in find_audio(str(tmp_path / "b"), (".wav",))] == [
        "broken.wav", "x.WAV",
    ]  # fmt: skip
    assert AUDIO_SUFFIXES == (".wav", ".flac", ".ogg", ".mp3")


def test_bad_names():
    assert check_name("/data/caf\u00e9.wav") is None
    raw = os.fsdecode(b"/data/caf\xe9.wav")
    assert check_name(raw)[1] == "bad_name"
    assert printable(raw) == "/data/caf\ufffd.wav"
