"""The evaluation entry point (utils/evaluation/scoring.py, table.py, evaluate_codec.py): a paper-style table
for any codec, each figure with its interval and the model behind it, every utterance's scores, and the
files the command line writes beside the table."""

import csv
import json
import shutil
import subprocess
import sys

import pytest
import soundfile as sf
import torch
import torchaudio
from helpers.recipe_runner import ROOT, recipe_env
from helpers.reference import load_reference

from focalcodec.codec import FocalCodec
from utils.evaluation import (
    evaluate_codec,
    interval,
    list_utterances,
    load_written,
    read_scores,
    resynthesize,
    score_reference,
    write_table,
)
from utils.metrics import QualityMetrics
from utils.runs import codec_from_runs

REAL_SPEECH = ROOT / "tests" / "data" / "real-speech"
CLIPS = ["84-121123-0000.flac", "84-121123-0007.wav"]  # 2 s each, a FLAC and a WAV


@pytest.fixture(scope="module")
def speech_folder(tmp_path_factory):
    """A folder of two short real-speech clips."""
    folder = tmp_path_factory.mktemp("speech")
    for name in CLIPS:
        shutil.copy(REAL_SPEECH / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def tiny_codec(tmp_path_factory):
    """A small random codec in the official format (the configuration of the end-to-end parity vector)."""
    torch.manual_seed(0)
    codec = FocalCodec(**load_reference("focalcodec_e2e")["config"])
    return codec, codec.to_pretrained(tmp_path_factory.mktemp("codec") / "tiny")


def test_utterances_from_a_folder_and_a_manifest(speech_folder, tmp_path):
    from_folder = list_utterances(speech_folder)
    assert [u.id for u in from_folder] == ["84-121123-0000", "84-121123-0007"]
    manifest = {u.id: {"wav": u.path, "duration": 1.0} for u in reversed(from_folder)}
    (tmp_path / "test.json").write_text(json.dumps(manifest))
    assert list_utterances(tmp_path / "test.json") == from_folder
    assert len(list_utterances(speech_folder, max_utterances=1)) == 1
    with pytest.raises(FileNotFoundError):
        list_utterances(tmp_path / "missing")


def test_rows_and_table(tiny_codec, speech_folder, tmp_path):
    codec, _ = tiny_codec
    utterances = list_utterances(speech_folder)
    row = evaluate_codec("tiny", codec, utterances, QualityMetrics(metrics="dnsmos,sim_resemblyzer"))
    assert row.token_rate == 50.0 and row.bitrate_kbps == pytest.approx(0.65)
    labels = ("DNSMOS-OVRL", "DNSMOS-SIG", "DNSMOS-BAK", "Sim-Resemblyzer")
    assert {(s.id, s.metric) for s in row.scores} == {(u.id, label) for u in utterances for label in labels}
    assert row.lower_better == dict.fromkeys(labels, False) and row.audios == {}  # all better higher
    assert 0 < row.figures["Code usage"] <= 100 and 0 <= row.figures["Entropy"] <= 100
    assert 1 <= row.figures["DNSMOS-OVRL"] <= 5 and -1 <= row.figures["Sim-Resemblyzer"] <= 1
    reference = score_reference(utterances, QualityMetrics(metrics="dnsmos"))
    # real speech scores better than the output of a random codec
    assert reference.figures["DNSMOS-OVRL"] > row.figures["DNSMOS-OVRL"]

    markdown, table = write_table([reference, row], tmp_path)
    rows = list(csv.DictReader(table.open()))
    assert [r["model"] for r in rows] == ["reference", "tiny"]
    assert rows[0]["Code usage"] == "" and float(rows[1]["bitrate (kbps)"]) == pytest.approx(0.65)
    spread = interval([s for s in row.scores if s.metric == "DNSMOS-OVRL"])
    assert float(rows[1]["DNSMOS-OVRL"]) == pytest.approx(spread.value)  # the table's figure is the mean
    assert (float(rows[1]["DNSMOS-OVRL CI low"]), float(rows[1]["DNSMOS-OVRL CI high"])) == (
        spread.low,
        spread.high,
    )
    assert rows[1]["Code usage CI low"] == ""  # a figure of the whole set: no interval
    text = markdown.read_text()
    assert "| reference |" in text and "DNSMOS-OVRL: speechmos" in text
    assert f"{spread.value:.2f} [{spread.low:.2f}, {spread.high:.2f}]" in text and "bootstrap" in text


@pytest.mark.slow
def test_command_line_offline(tiny_codec, speech_folder, tmp_path):
    _, folder = tiny_codec
    command = [sys.executable, str(ROOT / "evaluate_codec.py"), "--data", str(speech_folder)]
    command += ["--output", str(tmp_path), "--model", f"tiny={folder}", "--metrics", "utmos,sim,stoi"]
    command += ["--format", "versa", "--num_saved_audios", "1"]
    result = subprocess.run(command, cwd=ROOT, env=recipe_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    text = (tmp_path / "results.md").read_text()
    # Offline, UTMOS and Sim cannot load: their fallbacks fill the table under their own names
    header = text.splitlines()[0]
    assert "DNSMOS-OVRL" in header and "Sim-Resemblyzer" in header
    assert "UTMOS |" not in header and "| Sim |" not in header
    assert "tiny: UTMOS —" in text and "tiny: Sim —" in text
    # What is written is what was scored: the saved output, read back and scored, gives its utterance's score
    (written,) = (tmp_path / "audios" / "tiny").glob("*.wav")
    assert written.stem == CLIPS[0].split(".")[0]
    assert [path.name for path in (tmp_path / "audios" / "reference").glob("*.wav")] == [written.name]
    rescored = QualityMetrics(metrics="sim_resemblyzer")
    hyp = torch.from_numpy(sf.read(written, dtype="float32")[0])[None]
    rescored.append([written.stem], hyp, load_written(REAL_SPEECH / CLIPS[0], 16000))
    scores = read_scores(tmp_path / "scores.csv")
    assert set(scores) == {"reference", "tiny"}
    sim = {s.id: s.value for s in scores["tiny"] if s.metric == "Sim-Resemblyzer"}
    assert sim[written.stem] == rescored.summarize("Sim-Resemblyzer") and len(sim) == len(CLIPS)
    row = {row["model"]: row for row in csv.DictReader((tmp_path / "results.csv").open())}["tiny"]
    assert float(row["Sim-Resemblyzer"]) == pytest.approx(sum(sim.values()) / len(sim))
    # beside the table: the comparison, the listening report, VERSA's layout
    assert "## reference vs tiny" in (tmp_path / "comparison.md").read_text()
    report = (tmp_path / "report.html").read_text()
    assert report.count("<audio ") == 2 and 'src="audios/tiny/84-121123-0000.wav"' in report
    versa = (tmp_path / "versa" / "tiny.jsonl").read_text().splitlines()
    assert len(versa) == len(CLIPS) and '"stoi": ' in versa[0] and "report.html" in result.stdout


@pytest.mark.slow
def test_a_model_given_as_the_two_training_runs(quantizer_run, decoder_run, speech_folder, tmp_path):
    """``QUANTIZER_RUN+DECODER_RUN`` scores exactly as the export of the same two runs."""
    exported = codec_from_runs(quantizer_run, decoder_run, allow_random_encoder=True).to_pretrained(
        tmp_path / "c"
    )
    command = [sys.executable, str(ROOT / "evaluate_codec.py"), "--data", str(speech_folder)]
    command += ["--output", str(tmp_path / "eval"), "--metrics", "dnsmos", "--allow_random_encoder"]
    command += ["--model", f"runs={quantizer_run}+{decoder_run}", "--model", f"exported={exported}"]
    result = subprocess.run(command, cwd=ROOT, env=recipe_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {row["model"]: row for row in csv.DictReader((tmp_path / "eval" / "results.csv").open())}
    assert set(rows) == {"reference", "runs", "exported"}
    assert float(rows["runs"]["token rate (Hz)"]) == 50.0 and float(rows["runs"]["Code usage"]) > 0
    figures = ["Code usage", "Entropy", "DNSMOS-OVRL", "DNSMOS-SIG", "DNSMOS-BAK"]
    assert [rows["runs"][name] for name in figures] == [rows["exported"][name] for name in figures]


@pytest.fixture(scope="module")
def causal_codec():
    """A small random causal codec, 16 kHz in and 24 kHz out (the configuration of the stream vectors)."""
    torch.manual_seed(0)
    return FocalCodec(**load_reference("focalcodec_stream_e2e")["config"]).eval()


def test_a_24_khz_codec_is_scored_at_the_input_rate_offline_and_streaming(causal_codec):
    sig = torch.from_numpy(sf.read(str(REAL_SPEECH / CLIPS[1]), dtype="float32")[0])[None, :30000]
    offline_toks, offline = resynthesize(causal_codec, sig)
    streamed_toks, streamed = resynthesize(causal_codec, sig, streaming=True)
    assert offline.shape == streamed.shape == sig.shape  # resampled from 24 kHz to the input's 16 kHz
    with torch.no_grad():
        audio = causal_codec(sig)[2]
    expected = torchaudio.functional.resample(audio, 24000, 16000)
    torch.testing.assert_close(offline[:, : expected.shape[1]], expected[:, : sig.shape[1]])
    # Chunk by chunk: the tokens of the whole chunks are the offline ones, the last chunk zero-padded
    whole = sig.shape[1] // causal_codec.chunk_size * causal_codec.chunk_size // 320
    assert torch.equal(streamed_toks[:, :whole], offline_toks[:, :whole])
    assert streamed_toks.shape[1] == -(-sig.shape[1] // causal_codec.chunk_size) * 4
    torch.testing.assert_close(streamed[:, :16000], offline[:, :16000], atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_command_line_streaming_rows(causal_codec, tiny_codec, speech_folder, tmp_path):
    folder = causal_codec.to_pretrained(tmp_path / "causal")
    command = [sys.executable, str(ROOT / "evaluate_codec.py"), "--data", str(speech_folder), "--streaming"]
    command += ["--output", str(tmp_path / "eval"), "--metrics", "dnsmos"]
    command += ["--model", f"causal={folder}", "--model", f"offline_only={tiny_codec[1]}"]
    result = subprocess.run(command, cwd=ROOT, env=recipe_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {row["model"]: row for row in csv.DictReader((tmp_path / "eval" / "results.csv").open())}
    assert set(rows) == {
        "reference",
        "causal",
        "causal-streaming",
        "offline_only",
    }  # a non-causal codec: no row
    assert "offline_only is not causal" in result.stderr
    assert 1 <= float(rows["causal-streaming"]["DNSMOS-OVRL"]) <= 5
