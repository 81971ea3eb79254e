"""The listening report (utils/evaluation/report.py) written by write_outputs for a tiny evaluation of
real speech: self-contained (nothing from the network, every file it names beside it, the scores in the
page), and in a real headless Chromium opened from file://: every player plays its file, every image
loads, sorting puts the worst utterance first, the console stays clean; a screenshot is kept. The same
check fails when an audio file the page names is missing, or the page itself."""

import re
import shutil
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
from helpers.browser import check_page, headless_chromium, open_page, screenshot
from helpers.metric_signals import low_passed, noisy

from focalcodec.audio import write_wav
from utils.evaluation import (
    ModelScores,
    Utterance,
    listening_audios,
    load_written,
    save_references,
    write_outputs,
)
from utils.metrics import QualityMetrics

SPEECH = Path(__file__).resolve().parents[1] / "data" / "real-speech"
CLIPS = ["84-121123-0000.flac", "84-121123-0007.wav", "84-121123-0021.flac"]  # the last: scores, no audio
MODELS = {"lowpass": lambda sig: low_passed(sig, 1500), "noisy": lambda sig: noisy(sig, 10)}


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """report.html of two degraded 'models' of three clips; the first two saved for listening."""
    folder = tmp_path_factory.mktemp("evaluation")
    utterances = [Utterance(name.split(".")[0], str(SPEECH / name)) for name in CLIPS]
    rows = []
    for name, degrade in MODELS.items():
        metrics = QualityMetrics(metrics="stoi,mel_distance")
        audios = {}
        for index, utt in enumerate(utterances):
            ref = load_written(utt.path, 16000)[:, :32000]
            hyp = degrade(ref[0])[None]
            metrics.append([utt.id], hyp, ref)
            if index < 2:
                audios[utt.id] = folder / "audios" / name / f"{utt.id}.wav"
                write_wav(audios[utt.id], hyp[0], 16000)
        rows.append(ModelScores.from_metrics(name, metrics, token_rate=50.0))
        rows[-1].audios = audios
    references = save_references(utterances[:2], folder / "audios" / "reference")
    curves = folder / "curves.png"
    from matplotlib import image

    image.imsave(curves, np.linspace(0, 1, 200).reshape(10, 20))
    files = write_outputs(
        rows,
        folder,
        listening_audios(rows, references),
        "A tiny evaluation",
        ["versa"],
        {"Training curves": curves},
    )
    return files.report


def linked_files(page: Path) -> list[Path]:
    return [
        page.parent / unquote(link)
        for link in re.findall(r'(?:src|href)="([^"]+)"', page.read_text())
        if not link.startswith("data:")
    ]


def test_the_report_is_self_contained(report):
    text = report.read_text()
    assert "http://" not in text and "https://" not in text and "fetch(" not in text
    files = linked_files(report)
    assert all(path.is_file() for path in files)
    assert sum(path.suffix == ".wav" for path in files) == 6  # 2 utterances x (reference + 2 models)
    assert sum(path.parent.name == "report_files" for path in files) == 6  # their mel spectrograms
    assert (report.parent / "scores.csv").is_file() and (report.parent / "versa" / "noisy.jsonl").is_file()
    # the scores are in the page: every utterance's every figure, as a sortable cell
    values = re.findall(r'data-value="([^"]+)"', text)
    assert len(values) == 3 * 2 * 2  # 3 utterances x 2 models x (STOI, MelDist)
    assert text.count('class="sortable"') == 4 and "84-121123-0021" in text
    assert re.search(r"<td>0\.\d\d \[0\.\d\d, 0\.\d\d\]</td>", text)  # the table shows intervals
    assert "lowpass − noisy" in text  # the paired comparison


COLUMN = (
    "return Array.from(document.querySelectorAll('#utterances tbody tr'), "
    "r => r.cells[arguments[0]].dataset.value)"
)


def column(driver, index: int) -> list[float]:
    """The values of the utterance table's column ``index``, top to bottom."""
    return [float(value) for value in driver.execute_script(COLUMN, index)]


def test_the_report_plays_loads_and_sorts_in_chromium(report, tmp_path):
    with headless_chromium() as driver:
        open_page(driver, report)
        assert check_page(driver) == []
        assert driver.execute_script("return document.querySelectorAll('audio').length") == 6
        headers = driver.find_elements("css selector", "#utterances th.sortable")
        names = [header.text for header in headers]
        index = names.index("lowpass: MelDist") + 2  # after the id and listen columns
        headers[names.index("lowpass: MelDist")].click()  # a distance: worst = highest first
        worst_first = column(driver, index)
        assert worst_first == sorted(worst_first, reverse=True)
        headers[names.index("lowpass: MelDist")].click()
        assert column(driver, index) == sorted(worst_first)
        headers[names.index("noisy: STOI")].click()  # higher is better: worst = lowest first
        stoi = column(driver, names.index("noisy: STOI") + 2)
        assert stoi == sorted(stoi)
        assert check_page(driver) == []  # still no console error after the clicks
        shot = screenshot(driver, tmp_path / "report.png")
    assert shot.stat().st_size > 10_000
    print(f"screenshot of the report: {shot}")


def test_the_browser_check_fails_when_an_audio_file_is_missing(report, tmp_path):
    copy = tmp_path / "evaluation"
    shutil.copytree(report.parent, copy)
    missing = copy / "audios" / "noisy" / "84-121123-0007.wav"
    missing.unlink()
    with headless_chromium() as driver:
        open_page(driver, copy / report.name)
        problems = check_page(driver)
        open_page(driver, copy / "no-such-report.html")  # not even the page: Chromium's error page
        assert check_page(driver)[0].startswith("page not loaded")
    assert any(str(missing) in problem and "not playable" in problem for problem in problems), problems
    assert any(problem.startswith("console:") and "ERR_FILE_NOT_FOUND" in problem for problem in problems), (
        problems
    )
    assert len([p for p in problems if "not playable" in p]) == 1
