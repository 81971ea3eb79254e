"""Downloading LibriTTS subsets (utils/corpus/download.py) from a local HTTP server serving tiny generated
archives.

The server (tests/helpers/http_server.py) serves ``/<subset>.tar.gz`` in the LibriTTS layout with ``Range``
support, logs every request, and has switches for a corrupt body, a transfer cut midway, missing files
(404) and ignoring ``Range``.
"""

import hashlib
import math
import re
import shutil
import socket
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest
import soundfile as sf
from helpers.http_server import SPEAKERS_TXT, libritts_archives, serve, subset_files, tar_bytes

from utils.corpus import download
from utils.corpus.download import LIBRITTS_SHA256, DownloadError, download_libritts

SUBSETS = ("dev-clean", "test-clean")


@pytest.fixture(scope="module")
def archives() -> dict[str, bytes]:
    """``{subset: .tar.gz bytes}`` in the LibriTTS layout (``LibriTTS/<subset>/...`` + SPEAKERS.txt)."""
    return libritts_archives(SUBSETS)


@pytest.fixture
def server(archives):
    """A running server: ``SimpleNamespace(url, state, checksums)``."""
    with serve(archives) as running:
        yield running


def _fetch(server, data_folder: Path, subsets=SUBSETS, **kwargs) -> list[str]:
    kwargs.setdefault("progress", False)
    return download_libritts(data_folder, subsets, base_url=server.url, checksums=server.checksums, **kwargs)


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _assert_subset_installed(data_folder: Path, subset: str) -> None:
    assert _tree(data_folder / subset) == subset_files(subset)


# --------------------------------------------------------------------------------------------------
# Normal runs


def test_download_and_extract(server, tmp_path):
    data = tmp_path / "LibriTTS"
    stale = data / ".download" / "dev-clean.extracting" / "LibriTTS" / "dev-clean" / "84"
    stale.mkdir(parents=True)  # left by a run stopped while unpacking: must not end up in the corpus
    (stale / "junk.wav").write_bytes(b"junk")
    assert _fetch(server, data) == list(SUBSETS)
    for subset in SUBSETS:
        _assert_subset_installed(data, subset)
    assert (data / "SPEAKERS.txt").read_bytes() == SPEAKERS_TXT  # the corpus's top-level documents
    assert sorted(p.name for p in data.iterdir()) == ["SPEAKERS.txt", *SUBSETS]  # no temporary files
    assert [(r["path"], r["range"], r["status"]) for r in server.state.requests] == [
        ("/dev-clean.tar.gz", None, 200),
        ("/test-clean.tar.gz", None, 200),
    ]
    sf.read(data / "dev-clean" / "84" / "121123" / "84_121123_000000_000000.wav")  # real audio


def test_second_run_downloads_nothing(server, tmp_path):
    data = tmp_path / "LibriTTS"
    _fetch(server, data)
    before = _tree(data)
    server.state.requests.clear()
    assert _fetch(server, data) == []
    assert server.state.requests == []
    assert _tree(data) == before


def test_present_subset_is_not_downloaded(server, tmp_path):
    data = tmp_path / "LibriTTS"
    (data / "dev-clean").mkdir(parents=True)  # already there (even if empty: never overwritten)
    assert _fetch(server, data, subsets="test-clean") == ["test-clean"]
    assert _fetch(server, data) == []
    assert [r["path"] for r in server.state.requests] == ["/test-clean.tar.gz"]
    assert list((data / "dev-clean").iterdir()) == []


def test_progress_bar(server, tmp_path, capsys):
    _fetch(server, tmp_path / "quiet", subsets="dev-clean")
    assert capsys.readouterr().err == ""
    _fetch(server, tmp_path / "shown", subsets="dev-clean", progress=True)
    err = capsys.readouterr().err
    size = f"{len(server.state.files['/dev-clean.tar.gz']) / 1024:.2f}k"  # bytes, scaled by tqdm
    assert "LibriTTS dev-clean: 100%" in err and f"{size}/{size}" in err and "B/s" in err


# --------------------------------------------------------------------------------------------------
# Interrupted downloads


def _interrupt(server, data: Path) -> int:
    """A first run cut midway: returns the number of bytes kept in the partial file."""
    size = len(server.state.files["/dev-clean.tar.gz"])
    server.state.cut_after = size // 2
    with pytest.raises(DownloadError) as error:
        _fetch(server, data, subsets="dev-clean")
    partial = data / ".download" / "dev-clean.tar.gz.partial"
    message = str(error.value)
    assert f"stopped after {size // 2} of {size} bytes" in message
    assert "Run again to resume" in message and str(partial) in message
    assert partial.stat().st_size == size // 2
    assert not (data / "dev-clean").exists()
    server.state.cut_after = None
    return size // 2


def test_resume_with_range(server, tmp_path):
    data = tmp_path / "LibriTTS"
    kept = _interrupt(server, data)
    assert _fetch(server, data, subsets="dev-clean") == ["dev-clean"]
    _assert_subset_installed(data, "dev-clean")
    assert server.state.requests[-1]["range"] == f"bytes={kept}-"
    assert server.state.requests[-1]["status"] == 206
    assert not (data / ".download").exists()


def test_resume_when_server_ignores_range(server, tmp_path):
    data = tmp_path / "LibriTTS"
    kept = _interrupt(server, data)
    server.state.ignore_range = True
    assert _fetch(server, data, subsets="dev-clean") == ["dev-clean"]
    assert server.state.requests[-1]["range"] == f"bytes={kept}-"
    assert server.state.requests[-1]["status"] == 200  # whole file again: must not be appended
    _assert_subset_installed(data, "dev-clean")


def test_partial_longer_than_archive_restarts(server, tmp_path):
    data = tmp_path / "LibriTTS"
    partial = data / ".download" / "dev-clean.tar.gz.partial"
    partial.parent.mkdir(parents=True)
    too_long = len(server.state.files["/dev-clean.tar.gz"]) + 5  # e.g. the file changed on the server
    partial.write_bytes(b"x" * too_long)
    assert _fetch(server, data, subsets="dev-clean") == ["dev-clean"]
    assert [(r["range"], r["status"]) for r in server.state.requests] == [
        (f"bytes={too_long}-", 416),
        (None, 200),
    ]
    _assert_subset_installed(data, "dev-clean")


def test_downloaded_archive_is_not_fetched_again(server, archives, tmp_path):
    data = tmp_path / "LibriTTS"
    archive = data / ".download" / "dev-clean.tar.gz"  # complete, from a run stopped before unpacking
    archive.parent.mkdir(parents=True)
    archive.write_bytes(archives["dev-clean"])
    assert _fetch(server, data, subsets="dev-clean") == ["dev-clean"]
    assert server.state.requests == []
    _assert_subset_installed(data, "dev-clean")
    assert not (data / ".download").exists()


# --------------------------------------------------------------------------------------------------
# Failures


def test_checksum_mismatch(server, tmp_path):
    data = tmp_path / "LibriTTS"
    server.state.corrupt = True
    with pytest.raises(DownloadError) as error:
        _fetch(server, data, subsets="dev-clean")
    archive = data / ".download" / "dev-clean.tar.gz"
    served = server.state.files["/dev-clean.tar.gz"]
    corrupt = served[:-10] + bytes([served[-10] ^ 0xFF]) + served[-9:]
    message = str(error.value)
    assert str(archive) in message
    assert server.checksums["dev-clean"] in message and hashlib.sha256(corrupt).hexdigest() in message
    assert not archive.exists()
    assert not (data / "dev-clean").exists()
    assert list((data / ".download").iterdir()) == []  # no partial, no extraction folder
    # the next run downloads it again from zero
    server.state.corrupt = False
    assert _fetch(server, data, subsets="dev-clean") == ["dev-clean"]
    assert server.state.requests[-1]["range"] is None
    _assert_subset_installed(data, "dev-clean")


@pytest.mark.parametrize(
    ("members", "expected"),
    [
        (
            {"LibriTTS/dev-clean/84/a.txt": b"a", "LibriTTS/../../evil.txt": b"evil"},
            "outside the destination",
        ),
        ({"dev-clean/84/a.txt": b"a"}, "holds no LibriTTS/dev-clean/ folder"),
    ],
    ids=["unsafe-member", "wrong-layout"],
)
def test_bad_archive(server, tmp_path, members, expected):
    data = tmp_path / "corpus" / "LibriTTS"
    body = tar_bytes(members)
    server.state.files["/dev-clean.tar.gz"] = body
    checksums = {"dev-clean": hashlib.sha256(body).hexdigest()}
    with pytest.raises(DownloadError, match=re.escape(expected)):
        download_libritts(data, "dev-clean", base_url=server.url, checksums=checksums, progress=False)
    assert not (data / "dev-clean").exists()
    assert not (data / ".download" / "dev-clean.extracting").exists()
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["dev-clean.tar.gz"]


def _assert_clear_network_error(message: str, url: str, data: Path, reason: str) -> None:
    assert f"Could not download LibriTTS dev-clean from {url}" in message
    assert reason in message
    assert f"tar -xzf dev-clean.tar.gz --strip-components=1 -C {data}" in message


def test_http_404(server, tmp_path):
    data = tmp_path / "LibriTTS"
    server.state.missing.add("/dev-clean.tar.gz")
    with pytest.raises(DownloadError) as error:
        _fetch(server, data, subsets="dev-clean")
    assert isinstance(error.value, RuntimeError)
    _assert_clear_network_error(str(error.value), f"{server.url}/dev-clean.tar.gz", data, "HTTP 404")
    assert not (data / "dev-clean").exists()


def test_connection_refused(tmp_path):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    data = tmp_path / "LibriTTS"
    with pytest.raises(DownloadError) as error:
        download_libritts(data, "dev-clean", base_url=url, checksums={"dev-clean": "0" * 64}, progress=False)
    _assert_clear_network_error(str(error.value), f"{url}/dev-clean.tar.gz", data, "Connection refused")


def test_disk_space(server, tmp_path, monkeypatch):
    size = len(server.state.files["/dev-clean.tar.gz"])
    needed = size + math.ceil(size * download.EXTRACT_FACTOR)
    free = {"bytes": needed - 1}
    monkeypatch.setattr(shutil, "disk_usage", lambda path: SimpleNamespace(free=free["bytes"]))
    data = tmp_path / "LibriTTS"
    with pytest.raises(DownloadError, match=r"Not enough free disk space .* need about [\d.]+ KB .* free"):
        _fetch(server, data, subsets="dev-clean")
    assert not (data / ".download" / "dev-clean.tar.gz.partial").exists()  # nothing written
    free["bytes"] = needed
    assert _fetch(server, data, subsets="dev-clean") == ["dev-clean"]


# --------------------------------------------------------------------------------------------------
# Subset names, addresses and checksums


def test_unknown_subset(server, tmp_path):
    with pytest.raises(ValueError, match=r"Unknown LibriTTS subset.*'train-clean-99'") as error:
        download_libritts(tmp_path, ["dev-clean", "train-clean-99"], base_url=server.url, progress=False)
    for subset in LIBRITTS_SHA256:
        assert subset in str(error.value)
    assert server.state.requests == []
    assert list(tmp_path.iterdir()) == []


def test_real_addresses_and_checksums(tmp_path, monkeypatch):
    from torchaudio.datasets.libritts import _CHECKSUMS

    published = {url.rsplit("/", 1)[1].removesuffix(".tar.gz"): sha for url, sha in _CHECKSUMS.items()}
    assert published == LIBRITTS_SHA256
    assert len(published) == 7
    requested = []

    def offline(request, timeout):
        requested.append(request.full_url)
        raise urllib.error.URLError("offline")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    for subset in LIBRITTS_SHA256:
        url = f"https://www.openslr.org/resources/60/{subset}.tar.gz"
        with pytest.raises(DownloadError, match=re.escape(f"from {url}: offline")):
            download_libritts(tmp_path, subset, progress=False)
    assert requested == [f"https://www.openslr.org/resources/60/{s}.tar.gz" for s in LIBRITTS_SHA256]
