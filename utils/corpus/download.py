"""Download and unpack LibriTTS subsets that are missing from the data folder.

    download_libritts("data/LibriTTS", ["train-clean-100", "dev-clean", "test-clean"])

fetches ``https://www.openslr.org/resources/60/<subset>.tar.gz`` for every subset whose folder
``<data_folder>/<subset>/`` does not exist yet (a subset already there is never downloaded again), and
leaves ``<data_folder>/<subset>/<speaker>/<chapter>/...``: the layout :mod:`utils.corpus.libritts` reads. The
training scripts call it with ``--download True`` (before preparing, for the subsets of ``train_split``,
``valid_split`` and ``test_split``; ``download_url``/``download_checksums`` in the YAML are its
``base_url``/``checksums``), through ``utils.corpus.libritts.download_splits``.

For each missing subset:

* The archive is written to ``<data_folder>/.download/<subset>.tar.gz.partial``. A run stopped midway
  (network failure, Ctrl-C) leaves that file, and the next run continues where it stopped with an HTTP
  ``Range`` request (a server that ignores ``Range`` is handled: the download restarts from zero).
* Before downloading, the free disk space is compared with what is needed: the bytes still to download
  plus ``EXTRACT_FACTOR`` times the archive size for the unpacked files.
* The complete archive (renamed ``<subset>.tar.gz``) is checked against its published SHA-256; a mismatch
  deletes it and is an error.
* It is unpacked into ``<data_folder>/.download/<subset>.extracting/`` (same file system as the target)
  with ``tarfile``'s ``"data"`` filter, which refuses members outside the folder (``..``, links out,
  device files). The archive's ``LibriTTS/<subset>/`` folder is then renamed to ``<data_folder>/<subset>/``
  (one atomic step: the subset folder appears only once complete), and the corpus's top-level documents
  (``SPEAKERS.txt``, ``README_libritts.txt``, ...) are moved to ``data_folder`` if not there yet.
* The archive and the work folder are deleted; ``.download/`` too when empty.

Network failures (offline, unreachable host, HTTP errors) raise ``DownloadError`` naming the subset, the
address and the reason, and explaining how to download and unpack the subset by hand. Not safe to run
concurrently on one data folder: under DDP call it on the main process only (``run_on_main``).
"""

import contextlib
import hashlib
import http.client
import logging
import math
import os
import shutil
import tarfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterable

from tqdm import tqdm

from focalcodec.files import format_bytes

__all__ = ["EXTRACT_FACTOR", "LIBRITTS_SHA256", "LIBRITTS_URL", "DownloadError", "download_libritts"]

logger = logging.getLogger(__name__)

# Folder of the archives: <LIBRITTS_URL>/<subset>.tar.gz (OpenSLR resource 60; mirrors listed on the page).
LIBRITTS_URL = "https://www.openslr.org/resources/60"
LIBRITTS_PAGE = "https://www.openslr.org/60"
# SHA-256 of <LIBRITTS_URL>/<subset>.tar.gz, copied from torchaudio 2.x (torchaudio/datasets/libritts.py,
# _CHECKSUMS, which lists the same archives under http://www.openslr.org/resources/60/).
LIBRITTS_SHA256 = {
    "dev-clean": "da0864e1bd26debed35da8a869dd5c04dfc27682921936de7cff9c8a254dbe1a",
    "dev-other": "d413eda26f3a152ac7c9cf3658ef85504dfb1b625296e5fa83727f5186cca79c",
    "test-clean": "234ea5b25859102a87024a4b9b86641f5b5aaaf1197335c95090cde04fe9a4f5",
    "test-other": "33a5342094f3bba7ccc2e0500b9e72d558f72eb99328ac8debe1d9080402f10d",
    "train-clean-100": "c5608bf1ef74bb621935382b8399c5cdd51cd3ee47cec51f00f885a64c6c7f6b",
    "train-clean-360": "ce7cff44dcac46009d18379f37ef36551123a1dc4e5c8e4eb73ae57260de4886",
    "train-other-500": "e35f7e34deeb2e2bdfe4403d88c8fdd5fbf64865cae41f027a185a6965f0a5df",
}
# Unpacked size / archive size, with a margin (the audio is 16-bit PCM, which gzip hardly compresses).
EXTRACT_FACTOR = 1.1
DOWNLOAD_DIR = ".download"
ARCHIVE_ROOT = "LibriTTS"  # every archive holds LibriTTS/<subset>/<speaker>/<chapter>/...
_CHUNK_BYTES = 1 << 20


class DownloadError(RuntimeError):
    """A subset could not be downloaded, verified or unpacked (the message says what to do)."""


def download_libritts(
    data_folder: str | os.PathLike,
    subsets: str | Iterable[str],
    *,
    base_url: str = LIBRITTS_URL,
    checksums: dict[str, str] = LIBRITTS_SHA256,
    progress: bool = True,
    timeout: float = 60.0,
) -> list[str]:
    """Fetch and extract every LibriTTS subset of ``subsets`` missing from ``data_folder``.

    Arguments
    ---------
    data_folder: the LibriTTS root (created if needed); subset ``s`` ends up in ``<data_folder>/<s>/``.
    subsets: one subset name or several, e.g. ``["train-clean-100", "dev-clean"]``.
    base_url: folder holding ``<subset>.tar.gz`` (an OpenSLR mirror, or a local server in tests).
    checksums: ``{subset: SHA-256 of its archive}``; its keys are the known subset names.
    progress: show a tqdm progress bar (bytes) while downloading.
    timeout: seconds to wait for the server to connect or to send more data.

    Returns
    -------
    The subsets downloaded by this call, in the order given (``[]`` when all were already present).

    Raises ``ValueError`` for a subset name not in ``checksums`` (before any download) and
    ``DownloadError`` when a subset cannot be downloaded, verified or unpacked, or when the disk is too
    full. Subsets completed before the failure stay in place; an interrupted download resumes on the next
    call.
    """
    data_folder = os.fspath(data_folder)
    wanted = [subsets] if isinstance(subsets, str) else list(dict.fromkeys(subsets))
    unknown = [name for name in wanted if name not in checksums]
    if unknown:
        raise ValueError(
            f"Unknown LibriTTS subset(s): {', '.join(map(repr, unknown))}. "
            f"Known subsets: {', '.join(checksums)}."
        )
    missing = []
    for subset in wanted:
        if os.path.exists(os.path.join(data_folder, subset)):
            logger.info(f"LibriTTS {subset} is already in {data_folder}: not downloading it")
        else:
            missing.append(subset)
    for subset in missing:
        os.makedirs(os.path.join(data_folder, DOWNLOAD_DIR), exist_ok=True)
        url = f"{base_url.rstrip('/')}/{subset}.tar.gz"
        _fetch_subset(data_folder, subset, url, checksums[subset], progress, timeout)
    return missing


def _fetch_subset(
    data_folder: str, subset: str, url: str, sha256: str, progress: bool, timeout: float
) -> None:
    """Download (or resume), verify and unpack one subset into ``<data_folder>/<subset>/``.

    Returns nothing; raises ``DownloadError`` with what to do on any failure.
    """
    archive = os.path.join(data_folder, DOWNLOAD_DIR, f"{subset}.tar.gz")
    if os.path.exists(archive):  # downloaded by an earlier run that stopped before unpacking
        logger.info(f"Found the downloaded archive {archive}: not downloading it again")
    else:
        logger.info(f"Downloading LibriTTS {subset} from {url}")
        _download(url, archive + ".partial", subset, data_folder, sha256, progress, timeout)
        os.replace(archive + ".partial", archive)
    actual = _sha256(archive)
    if actual != sha256:
        os.remove(archive)
        raise DownloadError(
            f"Checksum mismatch for {archive} (LibriTTS {subset} from {url}): expected SHA-256 {sha256}, "
            f"got {actual}. The file was deleted: run again to download it anew. If the mismatch "
            f"persists, the server (or a proxy) serves another file: use a mirror listed on "
            f"{LIBRITTS_PAGE}.\n{_manual_hint(subset, url, sha256, data_folder)}"
        )
    logger.info(f"Unpacking {archive} into {data_folder}")
    _extract(archive, data_folder, subset, url, sha256)
    os.remove(archive)
    with contextlib.suppress(OSError):  # not empty: another subset's partial download is kept for resuming
        os.rmdir(os.path.join(data_folder, DOWNLOAD_DIR))
    logger.info(f"LibriTTS {subset} is ready in {os.path.join(data_folder, subset)}")


def _download(
    url: str, partial: str, subset: str, data_folder: str, sha256: str, progress: bool, timeout: float
) -> None:
    """Append the rest of ``url`` to ``partial`` (from zero when the server ignores ``Range``).

    Returns when the body is complete; raises ``DownloadError`` when the server cannot be reached or
    answers with an error, when the disk is too full, or when the transfer stops early.
    """
    response, start = _request(url, partial, subset, data_folder, sha256, timeout)
    with response:
        if response.status != 206:  # the server sends the whole file
            if start:
                logger.info(f"The server does not resume downloads: downloading {subset} from zero")
            start = 0
        elif start:
            logger.info(f"Resuming the download of {subset} after {format_bytes(start)}")
        length = response.headers.get("Content-Length")
        total = start + int(length) if length is not None else None
        _check_disk_space(data_folder, subset, start, total)
        done, stopped = _copy(response, partial, start, total, f"LibriTTS {subset}", progress)
    if total is not None and done != total:
        resume = f"Run again to resume: the {done} bytes received are kept in {partial}."
        reason = f"the transfer stopped after {done} of {total} bytes ({stopped})"
        raise _network_error(subset, url, sha256, data_folder, reason, resume)


def _request(
    url: str, partial: str, subset: str, data_folder: str, sha256: str, timeout: float
) -> tuple[http.client.HTTPResponse, int]:
    """Ask for ``url`` after the bytes already in ``partial`` (``Range: bytes=N-``), or all of it.

    Returns ``(response, N)``; raises ``DownloadError`` when the server cannot be reached or answers with
    an HTTP error. A partial file longer than the archive (HTTP 416) is deleted and the whole file asked.
    """
    start = os.path.getsize(partial) if os.path.exists(partial) else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={start}-"} if start else {})
    try:
        return urllib.request.urlopen(request, timeout=timeout), start
    except urllib.error.HTTPError as error:
        error.close()
        if error.code == 416 and start:
            logger.warning(f"{partial} does not match the file on the server: downloading from zero")
            os.remove(partial)
            return _request(url, partial, subset, data_folder, sha256, timeout)
        raise _network_error(subset, url, sha256, data_folder, f"HTTP {error.code} {error.reason}") from error
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise _network_error(subset, url, sha256, data_folder, str(reason)) from error


def _copy(
    response: http.client.HTTPResponse, partial: str, start: int, total: int | None, desc: str, progress: bool
) -> tuple[int, str]:
    """Write the body of ``response`` to ``partial``: appended after ``start`` bytes, or replacing it.

    Returns ``(size of partial, why the transfer ended)``; a network failure midway ends it without error
    (the caller compares the size with the expected one).
    """
    done = start
    with (
        open(partial, "ab" if start else "wb") as file,
        tqdm(
            total=total,
            initial=start,
            desc=desc,
            disable=not progress,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
        ) as bar,
    ):
        try:
            while chunk := response.read(_CHUNK_BYTES):
                file.write(chunk)
                done += len(chunk)
                bar.update(len(chunk))
        except (OSError, http.client.HTTPException) as error:
            return done, f"{type(error).__name__}: {error}"
    return done, "the server closed the connection"


def _check_disk_space(data_folder: str, subset: str, start: int, total: int | None) -> None:
    """Raise ``DownloadError`` when ``data_folder``'s disk cannot hold the rest and the unpacked files.

    Returns nothing; with no known archive size (no ``Content-Length``) it only logs a warning.
    """
    if total is None:
        logger.warning(f"The server does not give the size of {subset}: free disk space not checked")
        return
    remaining, unpacked = total - start, math.ceil(total * EXTRACT_FACTOR)
    free = shutil.disk_usage(data_folder).free
    if free < remaining + unpacked:
        raise DownloadError(
            f"Not enough free disk space in {data_folder} for LibriTTS {subset}: need about "
            f"{format_bytes(remaining + unpacked)} ({format_bytes(remaining)} to download + "
            f"{format_bytes(unpacked)} to unpack), {format_bytes(free)} free. Free some space or "
            "choose a data folder on a larger disk."
        )


def _extract(archive: str, data_folder: str, subset: str, url: str, sha256: str) -> None:
    """Unpack ``archive`` next to ``data_folder`` and rename its ``LibriTTS/<subset>/`` into place.

    Returns nothing; raises ``DownloadError`` (leaving no ``<data_folder>/<subset>/``) when the archive
    cannot be read, holds unsafe members, or lacks the subset folder.
    """
    workdir = os.path.join(data_folder, DOWNLOAD_DIR, f"{subset}.extracting")
    shutil.rmtree(workdir, ignore_errors=True)  # left by an earlier run stopped while unpacking
    root = os.path.join(workdir, ARCHIVE_ROOT)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(workdir, filter="data")
        if not os.path.isdir(os.path.join(root, subset)):
            raise DownloadError(
                f"{archive} holds no {ARCHIVE_ROOT}/{subset}/ folder: it is not the LibriTTS {subset} "
                f"archive.\n{_manual_hint(subset, url, sha256, data_folder)}"
            )
        os.rename(os.path.join(root, subset), os.path.join(data_folder, subset))
        for name in os.listdir(root):  # SPEAKERS.txt, README_libritts.txt, ...: same in every archive
            if os.path.isfile(os.path.join(root, name)) and not os.path.exists(
                os.path.join(data_folder, name)
            ):
                os.rename(os.path.join(root, name), os.path.join(data_folder, name))
    except (tarfile.TarError, EOFError, zlib.error, OSError) as error:
        raise DownloadError(
            f"Could not unpack {archive} (LibriTTS {subset}): {type(error).__name__}: {error}. The "
            f"archive is kept: run again to retry unpacking, or delete it to download it anew.\n"
            f"{_manual_hint(subset, url, sha256, data_folder)}"
        ) from error
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _network_error(
    subset: str, url: str, sha256: str, data_folder: str, reason: str, resume: str = ""
) -> DownloadError:
    """The ``DownloadError`` for a failed transfer: subset, address, reason, what to do."""
    resume = f" {resume}" if resume else ""
    return DownloadError(
        f"Could not download LibriTTS {subset} from {url}: {reason}.{resume} Check the network "
        f"connection and the address.\n{_manual_hint(subset, url, sha256, data_folder)}"
    )


def _manual_hint(subset: str, url: str, sha256: str, data_folder: str) -> str:
    """How to download and unpack ``subset`` by hand so that ``<data_folder>/<subset>/`` holds it."""
    return (
        f"To install it by hand: download {url} (or the same file from a mirror listed on {LIBRITTS_PAGE}), "
        f"check it with `sha256sum {subset}.tar.gz` (expected {sha256}), then run "
        f"`tar -xzf {subset}.tar.gz --strip-components=1 -C {data_folder}` (the archive holds "
        f"{ARCHIVE_ROOT}/{subset}/...), so that {os.path.join(data_folder, subset)}/<speaker>/<chapter>/ "
        "holds the audio."
    )


def _sha256(path: str) -> str:
    """The SHA-256 hex digest of the file at ``path``."""
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()
