"""Batched offline coding (``focalcodec/cli/batched.py`` and ``codec.py``): padded batches of real speech
of different lengths give the tokens of one file at a time, for a non-causal and a causal codec; length
sorting, background reading, the throughput line, mixed precision."""

import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.cli_helpers import (
    REAL_SPEECH,
    TINY_CONFIG,
    causal_config,
    expected_signal,
    run_cli,
    token_files,
    wav_files,
    write_model,
)

from focalcodec import cli
from focalcodec.cli import codec as cli_codec
from focalcodec.cli.batched import read_ahead, sorted_batches
from focalcodec.cli.codec import encoder_frames
from focalcodec.cli.files import Item
from focalcodec.codec import FocalCodec


@pytest.fixture(scope="module")
def speech_dir(tmp_path_factory) -> Path:
    """The six real LibriSpeech clips (2.0 to 11.0 s, every length different)."""
    folder = tmp_path_factory.mktemp("speech")
    for path in REAL_SPEECH.iterdir():
        if path.suffix in (".wav", ".flac"):
            shutil.copy(path, folder / path.name)
    return folder


@pytest.fixture(scope="module", params=["non-causal", "causal"])
def model_dir(request, tmp_path_factory) -> Path:
    config = TINY_CONFIG if request.param == "non-causal" else causal_config()
    return write_model(config, tmp_path_factory.mktemp("model") / request.param)


def test_padded_batches_give_the_tokens_of_single_files(capsys, monkeypatch, speech_dir, model_dir, tmp_path):
    alone = []  # batches re-encoded alone near a sign flip
    encode = cli_codec.Codec.encode

    def spy(self, sigs):
        alone.append(len(sigs) == 1)
        return encode(self, sigs)

    monkeypatch.setattr(cli_codec.Codec, "encode", spy)
    outputs = {}
    for batch_size, workers in ((1, 0), (4, 2), (6, 1)):
        alone.clear()
        out_dir = tmp_path / f"b{batch_size}"
        status, out = run_cli(
            capsys, "encode", speech_dir, "--model", model_dir, "--output", out_dir,
            "--batch_size", batch_size, "--workers", workers,
        )  # fmt: skip
        assert status == 0 and "6 files processed" in out, out
        assert "throughput:" in out and "files/s" in out and "audio-hours/hour" in out
        outputs[batch_size] = token_files(out_dir)
        if batch_size > 1:  # the batched path ran, and most files were not redone alone
            assert alone.count(False) == -(-6 // batch_size) and alone.count(True) < 6
            assert (f"{alone.count(True)} file" in out) == (alone.count(True) > 0)
    assert len(outputs[1]) == 6
    model = FocalCodec.from_pretrained(model_dir).eval()
    for name, record in outputs[1].items():
        for batch_size in (4, 6):
            assert torch.equal(outputs[batch_size][name]["toks"], record["toks"]), (batch_size, name)
        sig = expected_signal(next(speech_dir.glob(name.replace(".toks.pt", ".*"))))
        if model.causal:  # zero-padded to whole 80 ms chunks, as a stream's last chunk
            sig = torch.nn.functional.pad(sig, (0, -sig.shape[-1] % model.chunk_size))
        with torch.no_grad():
            assert torch.equal(record["toks"], model.sig_to_toks(sig[None])[0]), name


def test_resynth_batched_equals_single(capsys, speech_dir, model_dir, tmp_path):
    for batch_size in (1, 3):
        status, out = run_cli(
            capsys, "resynth", speech_dir, "--model", model_dir, "--output", tmp_path / f"b{batch_size}",
            "--batch_size", batch_size, "--subtype", "FLOAT",
        )  # fmt: skip
        assert status == 0 and "6 files processed" in out, out
    first, second = wav_files(tmp_path / "b1"), wav_files(tmp_path / "b3")
    assert first.keys() == second.keys() and len(first) == 6
    for name, sig in first.items():
        np.testing.assert_allclose(second[name], sig, atol=1e-5)


def test_encoder_frames_match_the_encoder(model_dir):
    model = FocalCodec.from_pretrained(model_dir).eval()
    for num_samples in (1, 399, 400, 401, 719, 720, 1280, 1281, 16000, 16321):
        with torch.no_grad():
            feats = model.sig_to_feats(torch.randn(1, num_samples))
        assert encoder_frames(model.encoder, num_samples) == feats.shape[1], num_samples


def test_sorted_batches_longest_first():
    items = [Item(Path(f"{n}.wav"), Path(f"{n}.pt"), key=(float(n),)) for n in (3, 9, 1, 7, 5)]
    batches = sorted_batches(items, 2)
    assert [[item.key[0] for item in batch] for batch in batches] == [[9, 7], [5, 3], [1]]


def test_read_ahead_keeps_order_reports_errors_and_reads_in_threads():
    items = [Item(Path(f"{n}.wav"), Path(f"{n}.pt")) for n in range(7)]
    threads = set()

    def read(item):
        threads.add(threading.current_thread().name)
        if item.path.stem == "4":
            raise ValueError("corrupt")
        return torch.full((3,), float(item.path.stem))

    batches = list(read_ahead(sorted_batches(items, 3), read, workers=2))
    results = [result for batch in batches for _, result in batch]
    assert [len(batch) for batch in batches] == [3, 3, 1]
    assert isinstance(results[4], ValueError)
    assert [float(r[0]) for i, r in enumerate(results) if i != 4] == [0, 1, 2, 3, 5, 6]
    assert threads and all(name.startswith("audio") for name in threads)
    inline = list(read_ahead(sorted_batches(items, 3), read, workers=0))
    assert [item.path for batch in inline for item, _ in batch] == [item.path for item in items]


def test_mixed_precision(capsys, speech_dir, model_dir, tmp_path):
    status, out = run_cli(
        capsys, "encode", speech_dir, "--model", model_dir, "--output", tmp_path / "bf16",
        "--precision", "bfloat16", "--batch_size", 3,
    )  # fmt: skip
    assert status == 0 and "in bfloat16" in out and "6 files processed" in out, out
    reference = token_files(tmp_path / "bf16")
    assert len(reference) == 6 and all(record["toks"].dtype == torch.int64 for record in reference.values())
    args = ["encode", str(speech_dir), "--model", str(model_dir), "--output", str(tmp_path / "f16")]
    assert cli.main([*args, "--precision", "float16"]) == 2
    assert "needs a CUDA device" in capsys.readouterr().err
