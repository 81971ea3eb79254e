"""Plumbing the evaluation metrics share: lazy model loading that fails fast and clearly, cutting padded
batches to their true lengths, resampling to the 16 kHz the metric models expect, and the base classes
(:class:`ModelMetric`, :class:`UtteranceScores`, :class:`PairScores`) by which every metric says whether it
has data, which way is better, and what each utterance scored (:class:`UtteranceScore`).

Loading never waits on an unreachable network: before a download is attempted the host is probed with a
short timeout (skipped when a proxy is configured), and ``HF_HUB_OFFLINE=1`` is honoured. A model that
cannot be loaded raises :class:`MetricUnavailableError`, whose ``reason`` is meant for the user; the same
error is raised again on every later use without retrying.
"""

import importlib
import logging
import os
import socket
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import ClassVar, NamedTuple
from urllib.parse import urlparse

import torch
import torchaudio
from speechbrain.utils.metric_stats import MetricStats

from focalcodec.audio import absolute_lengths

__all__ = [
    "METRIC_SAMPLE_RATE",
    "LazyModel",
    "MetricUnavailableError",
    "ModelMetric",
    "PairScores",
    "UtteranceScore",
    "UtteranceScores",
    "group_by_length",
    "import_package",
    "load_hf_pretrained",
    "load_torch_hub",
    "mean_or_nan",
    "package_id",
    "paired_items",
    "prepare_items",
]

logger = logging.getLogger(__name__)

METRIC_SAMPLE_RATE = 16000
PROBE_TIMEOUT = 5.0  # seconds; a reachable hub answers a TCP connect far faster
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


class MetricUnavailableError(RuntimeError):
    """The model behind a metric could not be loaded.

    Attributes
    ----------
    metric : the metric's label (e.g. ``"UTMOS"``).
    source : the hub id or local path that was tried.
    reason : a one-line explanation for the user (e.g. ``"network unreachable (...)"``).
    """

    def __init__(self, metric: str, source: str, reason: str) -> None:
        self.metric, self.source, self.reason = metric, source, reason
        super().__init__(f"{metric} unavailable: could not load {source} ({reason})")


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def unreachable(url: str, timeout: float = PROBE_TIMEOUT) -> str | None:
    """Why ``url``'s host cannot be reached (``None`` when a TCP connection succeeds).

    With a proxy configured the direct probe says nothing, so it is skipped (``None``).
    """
    if any(os.environ.get(name) for name in PROXY_VARIABLES):
        return None
    parsed = urlparse(url)
    host = parsed.hostname or url
    port = parsed.port or (80 if parsed.scheme == "http" else 443)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as error:
        return f"network unreachable: {host}:{port}: {error}"


def _hf_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def load_hf_pretrained(metric: str, loader: Callable, source: str, **kwargs):
    """``loader(source, **kwargs)`` (a transformers ``from_pretrained``) without waiting on a dead network.

    ``source`` is a local folder (``save_pretrained`` format) or a hub id. A hub id is first looked up in
    the local Hugging Face cache; only when it is missing there is the hub contacted, after a quick probe.
    Any failure becomes :class:`MetricUnavailableError`.
    """
    try:
        if Path(source).expanduser().is_dir():
            return loader(str(Path(source).expanduser()), local_files_only=True, **kwargs)
        try:
            return loader(source, local_files_only=True, **kwargs)
        except Exception as cache_miss:  # not (fully) in the local cache
            if _hf_offline():
                raise MetricUnavailableError(
                    metric, source, "not in the local Hugging Face cache and HF_HUB_OFFLINE is set"
                ) from cache_miss
        from huggingface_hub.constants import ENDPOINT

        reason = unreachable(ENDPOINT)
        if reason is not None:
            raise MetricUnavailableError(metric, source, reason)
        return loader(source, **kwargs)
    except MetricUnavailableError:
        raise
    except Exception as error:  # missing files, wrong format, hub errors: all mean "unavailable"
        raise MetricUnavailableError(metric, source, _first_line(error)) from error


def load_torch_hub(metric: str, source: str, entry: str, checkpoint: str | None = None):
    """``torch.hub.load`` of ``entry`` from a GitHub repo (``owner/name[:ref]``) or a local clone folder.

    A GitHub repo that is not in the torch hub cache yet is probed first, so an offline machine fails at
    once. ``checkpoint`` (a local state_dict file) replaces the entry point's own weight download: the
    entry is then called with ``pretrained=False`` and the file is loaded into it.
    """
    local = Path(source).expanduser()
    kwargs = {"pretrained": False} if checkpoint else {}
    try:
        if local.is_dir():
            model = torch.hub.load(str(local), entry, source="local", **kwargs)
        else:
            owner_name, _, ref = source.partition(":")
            cached = Path(torch.hub.get_dir()) / "_".join(
                [*owner_name.split("/"), (ref or "main").replace("/", "_")]
            )
            if not cached.is_dir():
                reason = unreachable("https://github.com")
                if reason is not None:
                    raise MetricUnavailableError(metric, source, reason)
            model = torch.hub.load(source, entry, trust_repo=True, **kwargs)
        if checkpoint:
            state = torch.load(checkpoint, map_location="cpu", weights_only=True)
            model.load_state_dict(state.get("state_dict", state) if isinstance(state, dict) else state)
        return model.eval()
    except MetricUnavailableError:
        raise
    except Exception as error:  # network, missing hubconf entry, bad weights: all mean "unavailable"
        raise MetricUnavailableError(metric, source, _first_line(error)) from error


def import_package(metric: str, module: str, requirement: str):
    """``importlib.import_module(module)``; when it fails, a :class:`MetricUnavailableError` saying what to
    install (``requirement``, e.g. ``"pesq==0.0.4"``)."""
    try:
        return importlib.import_module(module)
    except Exception as error:  # not installed, or a compiled part that does not load
        raise MetricUnavailableError(
            metric, module, f"{_first_line(error)} (pip install {requirement})"
        ) from error


def package_id(distribution: str) -> str:
    """``"<distribution> <version>"`` for labelling figures (the bare name when it is not installed)."""
    try:
        return f"{distribution} {version(distribution)}"
    except PackageNotFoundError:
        return distribution


class LazyModel:
    """A model loaded once, on first use, then moved to whichever device the signals are on.

    Several metrics may share one ``LazyModel`` (UTMOS and RefUTMOS do). A loading failure is remembered
    and raised again (as the same :class:`MetricUnavailableError`) without retrying.

    Arguments
    ---------
    load : builds the model on the CPU; raises :class:`MetricUnavailableError` when it cannot.
    model_id : what the figures are labelled with (hub id or local path, plus the entry point if any).
    model : an already-built model (skips ``load``).
    """

    def __init__(self, load: Callable[[], object], model_id: str, model: object = None) -> None:
        self._load = load
        self.model_id = model_id
        self.model = model
        self.error: MetricUnavailableError | None = None

    def get(self, device: torch.device | str = "cpu"):
        """The model, on ``device`` when it is a torch module."""
        if self.model is None:
            if self.error is not None:
                raise self.error
            try:
                self.model = self._load()
            except MetricUnavailableError as error:
                self.error = error
                raise
            logger.info(f"Loaded {self.model_id}")
        if isinstance(self.model, torch.nn.Module):
            self.model.to(device)
        return self.model


def prepare_items(sig: torch.Tensor, lens: torch.Tensor | None, sample_rate: int) -> list[torch.Tensor]:
    """Cut a padded batch ``(B, N)`` to its items' true lengths and resample each to 16 kHz (float32).

    Cutting happens before resampling, so no padding leaks into an item through the resampling filter.
    """
    if sig.dim() != 2:
        raise ValueError(f"expected a (batch, samples) signal, got shape {tuple(sig.shape)}")
    if lens is not None and torch.as_tensor(lens).dim() > 1:
        raise ValueError("lens must be a (batch,) tensor of relative lengths (was a signal passed as lens?)")
    sig = sig.detach().float()
    items = [sig[i, :n] for i, n in enumerate(absolute_lengths(lens, *sig.shape))]
    if sample_rate != METRIC_SAMPLE_RATE:
        items = [torchaudio.functional.resample(item, sample_rate, METRIC_SAMPLE_RATE) for item in items]
    return items


def group_by_length(items: list[torch.Tensor]) -> list[list[int]]:
    """Indices of ``items`` grouped by equal length, so that every group stacks without padding."""
    groups: dict[int, list[int]] = {}
    for index, item in enumerate(items):
        groups.setdefault(item.shape[-1], []).append(index)
    return list(groups.values())


def check_pair(hyp: torch.Tensor, ref: torch.Tensor) -> None:
    """Hypothesis and reference batches must have the same ``(B, N)`` shape."""
    if hyp.dim() != 2 or hyp.shape != ref.shape:
        raise ValueError(
            f"hyp and ref must both be (batch, samples), got {tuple(hyp.shape)} and {tuple(ref.shape)}"
        )


def paired_items(
    hyp: torch.Tensor, ref: torch.Tensor, lens: torch.Tensor | None, sample_rate: int
) -> list[torch.Tensor]:
    """The items of a checked hyp/ref pair of ``(B, N)`` batches sharing ``lens``, prepared in one pass
    (:func:`prepare_items`): the ``B`` hypotheses, then the ``B`` references."""
    check_pair(hyp, ref)
    return prepare_items(
        torch.cat([hyp, ref]), None if lens is None else torch.cat([lens, lens]), sample_rate
    )


def mean_or_nan(values) -> float:
    """The mean of the defined ``values`` (a NaN is an undefined score, e.g. PESQ of a clip without speech,
    and is left out); NaN when there are none (a metric that has scored nothing yet)."""
    values = [value for value in values if value == value]
    return sum(values) / len(values) if values else float("nan")


class UtteranceScore(NamedTuple):
    """One figure of one utterance.

    id : the utterance id.
    metric : the figure's label (e.g. ``"PESQ-WB"``, ``"DNSMOS-OVRL"``).
    value : the utterance's value (NaN: undefined for this utterance, left out of means and intervals).
    weight : what the utterance counts for in the corpus figure: 1 for a mean over utterances; the
        reference length for a ratio of sums (dWER: edits over reference words, so the corpus figure is
        the weighted mean of the utterances' rates).
    """

    id: str
    metric: str
    value: float
    weight: float = 1.0


class ModelMetric(MetricStats):
    """Base of the quality metrics: labelled figures computed with a model, loaded lazily.

    A subclass sets ``label`` (its figure's name, or the prefix of its figures), ``model_id`` (what the
    figures are attributed to) and ``loader`` (a :class:`LazyModel`), and implements ``clear``,
    ``append``, ``summarize``, ``write_stats`` and :attr:`num_scored`, by which it says itself whether it
    has anything to report (:class:`~utils.metrics.suite.QualityMetrics` leaves out those at 0), and
    :meth:`utterance_scores`. ``lower_is_better`` says which way its figures improve (or override
    :meth:`lower_better` when they differ).
    """

    label: str
    model_id: str
    loader: LazyModel
    lower_is_better: ClassVar[bool] = False

    def lower_better(self, label: str) -> bool:
        """Whether a lower value of the figure ``label`` is better (an error or a distance)."""
        return self.lower_is_better

    def utterance_scores(self) -> list[UtteranceScore]:
        """Every figure of every utterance scored since the last ``clear``."""
        raise NotImplementedError

    @property
    def num_scored(self) -> int:
        """How many utterances were scored since the last ``clear`` (0: nothing to report)."""
        raise NotImplementedError

    def load(self, device: torch.device | str = "cpu"):
        """Load the model now (otherwise on the first ``append``); raises MetricUnavailableError."""
        return self.loader.get(device)


class UtteranceScores(ModelMetric):
    """Base of the metrics that keep one score per utterance (``ids`` and ``scores``, appended together)
    and report their mean under ``label``.

    Subclasses set ``label``, ``model_id`` and ``loader`` and append to ``ids`` and ``scores``;
    ``score_kind`` (e.g. ``"cosine"``) is shown by :meth:`write_stats`. With ``fields`` (e.g. DNSMOS's
    ``("OVRL", "SIG", "BAK")``) each score is a dict of those values, reported as ``<label>-<field>``.
    """

    score_kind = ""
    fields: ClassVar[tuple[str, ...]] = ()

    def clear(self) -> None:
        """Forget all scores."""
        self.ids: list[str] = []
        self.scores: list = []

    @property
    def num_scored(self) -> int:
        """The number of utterances scored since the last ``clear``."""
        return len(self.scores)

    def _columns(self) -> dict[str, list[float]]:
        """Figure label -> the utterances' values, in order."""
        if not self.fields:
            return {self.label: list(self.scores)}
        return {f"{self.label}-{name}": [score[name] for score in self.scores] for name in self.fields}

    def summarize(self, field: str | None = None) -> dict[str, float] | float:
        """``{label: mean score}`` (or ``{"<label>-<field>": mean}`` for each of ``fields``; NaN before any
        ``append``); ``field`` (a label, one of ``fields`` or, for a single figure, "average") gives the
        number alone."""
        stats = {label: mean_or_nan(values) for label, values in self._columns().items()}
        if field is None:
            return stats
        if field == "average" and not self.fields:
            field = self.label
        return stats[field if field in stats else f"{self.label}-{field}"]

    def utterance_scores(self) -> list[UtteranceScore]:
        """One :class:`UtteranceScore` per utterance and figure."""
        return [
            UtteranceScore(utt_id, label, float(value))
            for label, values in self._columns().items()
            for utt_id, value in zip(self.ids, values, strict=True)
        ]

    def write_stats(self, filestream) -> None:
        """The mean, then per-utterance scores, one ``id score`` (or ``id FIELD=value ...``) line each."""
        kind = f", {self.score_kind}" if self.score_kind else ""
        if self.fields:
            summary = ", ".join(f"{key} {value:.4f}" for key, value in self.summarize().items())
        else:
            summary = f"{self.summarize(self.label):.4f}"
        filestream.write(f"{self.label} ({self.model_id}{kind}): {summary}\n")
        for utt_id, score in zip(self.ids, self.scores, strict=True):
            if self.fields:
                score = " ".join(f"{name}={score[name]:.4f}" for name in self.fields)
            else:
                score = f"{score:.4f}"
            filestream.write(f"{utt_id} {score}\n")


class PairScores(UtteranceScores):
    """Base of the reference-based signal metrics (PESQ, STOI, spectral distances, F0): one score per
    utterance from the output and its reference, computed by a package rather than a learned model.

    Both are cut to their shared true length (``lens``; the evaluation has already fitted the output to
    the input's length) and resampled to 16 kHz; no time alignment is attempted, so a delayed output
    scores as delayed. Subclasses set ``label``, ``model_id`` (the package and its settings) and
    ``loader``, a :class:`LazyModel` whose model is the scoring function
    ``score(hyp, ref) -> float`` (or a dict of ``fields``) on 1-D float64 numpy arrays at 16 kHz, and
    whose loading raises :class:`MetricUnavailableError` when the package is missing.
    """

    def append(
        self, ids: list[str], hyp: torch.Tensor, ref: torch.Tensor, lens: torch.Tensor | None = None
    ) -> None:
        """Score a batch: ``hyp``/``ref`` (B, N) at ``sample_rate``; ``lens`` (B,) relative or None."""
        items = paired_items(hyp, ref, lens, self.sample_rate)
        score = self.loader.get()
        for hyp_item, ref_item in zip(items[: len(ids)], items[len(ids) :], strict=True):
            self.scores.append(score(hyp_item.double().cpu().numpy(), ref_item.double().cpu().numpy()))
        self.ids.extend(ids)
