"""A local HTTP server (stdlib ``http.server`` in a thread, on 127.0.0.1) serving LibriTTS-layout archives.

It serves ``/<subset>.tar.gz`` with ``Range`` support, logs every request, and has switches for a corrupt
body, a transfer cut midway, missing files (404) and ignoring ``Range``. Used by the download tests and by
the recipe's ``--download True`` tests (``download_url``/``download_checksums`` point at it).
"""

import contextlib
import hashlib
import io
import re
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import numpy as np
import soundfile as sf

__all__ = [
    "SPEAKERS",
    "SPEAKERS_TXT",
    "ServerState",
    "libritts_archives",
    "serve",
    "subset_files",
    "tar_bytes",
]

# subset -> (speaker, chapter) of its utterances
SPEAKERS = {
    "train-clean-100": ("103", "1240"),
    "dev-clean": ("84", "121123"),
    "test-clean": ("61", "70968"),
}
SPEAKERS_TXT = b";ID |SEX| SUBSET |MINUTES| NAME\n84 | F | dev-clean | 8.02 | Christie Nowak\n"


def tar_bytes(members: dict[str, bytes]) -> bytes:
    """A ``.tar.gz`` holding ``{name: bytes}``."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def subset_files(subset: str, utterances: int = 2, seconds: float = 0.1) -> dict[str, bytes]:
    """``{path relative to the subset folder: bytes}``: short 24 kHz wavs of noise with their normalized
    text (``<speaker>/<chapter>/<uttid>.wav``)."""
    speaker, chapter = SPEAKERS[subset]
    rng = np.random.default_rng(len(subset))
    files = {}
    for utt in range(utterances):
        uttid = f"{speaker}_{chapter}_00000{utt}_000000"
        wav = io.BytesIO()
        noise = rng.uniform(-0.5, 0.5, round(24000 * seconds)).astype(np.float32)
        sf.write(wav, noise, 24000, format="WAV", subtype="PCM_16")
        files[f"{speaker}/{chapter}/{uttid}.wav"] = wav.getvalue()
        files[f"{speaker}/{chapter}/{uttid}.normalized.txt"] = f"Sentence {utt} of {subset}.".encode()
    return files


def libritts_archives(subsets, **files_options) -> dict[str, bytes]:
    """``{subset: .tar.gz bytes}`` as OpenSLR's (``LibriTTS/<subset>/...`` + ``LibriTTS/SPEAKERS.txt``)."""
    result = {}
    for subset in subsets:
        members = {
            f"LibriTTS/{subset}/{p}": data for p, data in subset_files(subset, **files_options).items()
        }
        result[subset] = tar_bytes({"LibriTTS/SPEAKERS.txt": SPEAKERS_TXT, **members})
    return result


@dataclass
class ServerState:
    files: dict[str, bytes]
    requests: list[dict] = field(default_factory=list)  # {"path", "range", "status"}
    corrupt: bool = False  # flip a byte of every body
    cut_after: int | None = None  # send only the first cut_after bytes of the file, then close
    ignore_range: bool = False  # always answer 200 with the whole file
    missing: set[str] = field(default_factory=set)  # paths answered with 404


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        state: ServerState = self.server.state
        entry = {"path": self.path, "range": self.headers.get("Range"), "status": None}
        state.requests.append(entry)
        body = state.files.get(self.path)
        if body is None or self.path in state.missing:
            entry["status"] = 404
            self.send_error(404)
            return
        if state.corrupt:
            body = body[:-10] + bytes([body[-10] ^ 0xFF]) + body[-9:]
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", entry["range"] or "")
        if match and not state.ignore_range:
            start = int(match.group(1))
            if start >= len(body):
                entry["status"] = 416
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        entry["status"] = 206 if start else 200
        self.send_response(entry["status"])
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        end = len(body) if state.cut_after is None else max(start, state.cut_after)
        self.wfile.write(body[start:end])  # with a cut: fewer bytes than announced, then the socket closes

    def log_message(self, format: str, *args) -> None:  # keep the test output quiet
        pass


@contextlib.contextmanager
def serve(archives: dict[str, bytes]) -> Iterator[SimpleNamespace]:
    """Serve ``{subset: archive bytes}`` as ``/<subset>.tar.gz``: yields ``SimpleNamespace(url, state,
    checksums)`` (``checksums``: ``{subset: SHA-256}``, what ``download_libritts`` checks against)."""
    state = ServerState(files={f"/{subset}.tar.gz": data for subset, data in archives.items()})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.state = state
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    checksums = {subset: hashlib.sha256(data).hexdigest() for subset, data in archives.items()}
    try:
        yield SimpleNamespace(
            url=f"http://127.0.0.1:{httpd.server_address[1]}", state=state, checksums=checksums
        )
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()
