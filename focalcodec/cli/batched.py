"""Offline ``encode``, ``decode`` and ``resynth``: files sorted by length and coded in batches, audio read
and resampled by background threads while the model runs."""

import math
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import torch

from focalcodec.audio import write_wav
from focalcodec.cli.codec import Codec
from focalcodec.cli.files import Item, Report, load_tokens, plural, progress
from focalcodec.files import atomic_write

__all__ = ["read_ahead", "readable_tokens", "run_decode", "run_encode", "sorted_batches", "write_result"]


def sorted_batches(items: list[Item], batch_size: int) -> list[list[Item]]:
    """Items sorted by key (longest first: an out-of-memory batch shows at once), ``batch_size`` a batch."""
    ordered = sorted(items, key=lambda item: item.key, reverse=True)
    return [ordered[start : start + batch_size] for start in range(0, len(ordered), batch_size)]


def read_ahead(
    batches: list[list[Item]], read: Callable[[Item], torch.Tensor], workers: int
) -> Iterator[list[tuple[Item, torch.Tensor | BaseException]]]:
    """The batches with each item's ``read`` result (or the error it raised), read by ``workers`` threads
    at most two batches ahead (decoding and resampling release the GIL); ``workers=0`` reads in line."""
    if workers == 0:
        for batch in batches:
            yield [(item, _attempt(read, item)) for item in batch]
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="audio") as pool:
        pending: deque[list[tuple[Item, Future]]] = deque()
        for batch in batches:
            pending.append([(item, pool.submit(_attempt, read, item)) for item in batch])
            if len(pending) > 2:
                yield [(item, future.result()) for item, future in pending.popleft()]
        while pending:
            yield [(item, future.result()) for item, future in pending.popleft()]


def _attempt(read: Callable[[Item], torch.Tensor], item: Item) -> torch.Tensor | BaseException:
    try:
        return read(item)
    except Exception as error:  # a header can be fine and the data truncated or corrupt
        return error


def _decode_all(codec: Codec, items: list[Item], toks: list[torch.Tensor]) -> list[torch.Tensor]:
    """Each item's waveform of its original duration, items of equal token and output lengths decoded
    together (the decoder's focal modulation has a global context: padding would change the audio)."""
    groups: dict[tuple[int, int], list[int]] = {}
    for index, item in enumerate(items):
        groups.setdefault((toks[index].numel(), codec.output_length(item.meta)), []).append(index)
    sigs: list[torch.Tensor] = [torch.empty(0)] * len(items)
    for (_, output_length), indices in groups.items():
        for index, sig in zip(indices, codec.decode([toks[i] for i in indices], output_length), strict=True):
            sigs[index] = sig
    return sigs


def write_result(codec: Codec, item: Item, result: torch.Tensor, resynth: bool, subtype: str) -> None:
    """An item's wav (``resynth``) or token file."""
    if resynth:
        write_wav(item.output, result, codec.output_rate, subtype)
    else:
        record = codec.token_record(result, item.meta)
        atomic_write(item.output, lambda tmp: torch.save(record, tmp))


def run_encode(
    codec: Codec,
    items: list[Item],
    batch_size: int,
    workers: int,
    report: Report,
    resynth: bool,
    subtype: str,
) -> None:
    """``encode`` (token files) or ``resynth`` (wavs) of audio files."""
    items = codec.probe_audio(items, report)
    with progress(len(items), "resynth" if resynth else "encode") as bar:
        for batch in read_ahead(sorted_batches(items, batch_size), codec.read_audio, workers):
            group, sigs = [], []
            for item, sig in batch:
                if isinstance(sig, torch.Tensor):
                    group.append(item)
                    sigs.append(sig)
                else:
                    report.fail(item.path, sig)
            try:
                toks = codec.encode(sigs) if sigs else []
                results = _decode_all(codec, group, toks) if resynth else toks
            except Exception as error:  # e.g. out of memory: report these files, go on
                for item in group:
                    report.fail(item.path, error)
                bar.update(len(batch))
                continue
            for item, result in zip(group, results, strict=True):
                try:
                    write_result(codec, item, result, resynth, subtype)
                    report.succeed(item)
                except Exception as error:  # e.g. a full disk
                    report.fail(item.path, error)
            bar.update(len(batch))


def readable_tokens(codec: Codec, items: list[Item], report: Report) -> list[Item]:
    """Token files that this codec can decode (the others are reported); warns about other models."""
    readable, other_config = [], 0
    for item in items:
        try:
            data = load_tokens(item.path)
            if data.get("codebook_size", codec.codebook_size) != codec.codebook_size:
                raise ValueError(
                    f"encoded with {data['codebook_size']} codes, the model has {codec.codebook_size}"
                )
            if "token_rate" in data and not math.isclose(data["token_rate"], codec.token_rate):
                raise ValueError(f"{data['token_rate']:g} Hz tokens, the model makes {codec.token_rate:g} Hz")
            if int(data["toks"].min()) < 0 or int(data["toks"].max()) >= codec.codebook_size:
                raise ValueError(f"tokens outside [0, {codec.codebook_size})")
        except Exception as error:  # torch.load raises many types for corrupt files
            report.fail(item.path, error)
            continue
        other_config += "config" in data and data["config"] != codec.config
        item.meta = {key: data[key] for key in ("sample_rate", "num_samples")}
        item.key = (data["toks"].numel(), codec.output_length(item.meta))
        readable.append(item)
    if other_config:
        print(f"warning: {plural(other_config, 'token file')} were encoded with another model configuration")
    return readable


def _equal_batches(items: list[Item], batch_size: int) -> list[list[Item]]:
    """Runs of equal keys (token and output lengths), at most ``batch_size`` long: the decoder's focal
    modulation has a global context, so padding would change the audio."""
    batches: list[list[Item]] = []
    for item in sorted(items, key=lambda item: item.key, reverse=True):
        if batches and batches[-1][0].key == item.key and len(batches[-1]) < batch_size:
            batches[-1].append(item)
        else:
            batches.append([item])
    return batches


def run_decode(codec: Codec, items: list[Item], batch_size: int, report: Report, subtype: str) -> None:
    """``decode``: token files to wavs of the original duration."""
    readable = readable_tokens(codec, items, report)
    with progress(len(readable), "decode") as bar:
        for batch in _equal_batches(readable, batch_size):
            try:
                toks = [load_tokens(item.path)["toks"] for item in batch]
                sigs = codec.decode(toks, batch[0].key[1])
            except Exception as error:
                for item in batch:
                    report.fail(item.path, error)
                bar.update(len(batch))
                continue
            for item, sig in zip(batch, sigs, strict=True):
                try:
                    write_wav(item.output, sig, codec.output_rate, subtype)
                    report.succeed(item)
                except Exception as error:
                    report.fail(item.path, error)
                bar.update(1)
