"""Measuring tools of the benchmarks: device-synchronised timers, peak memory, interleaved runs, medians."""

import os
import resource
import statistics
import sys
import threading
import time
from collections.abc import Callable

import torch

__all__ = ["ForwardTimer", "PeakMemory", "interleaved", "median", "process_peak_memory", "sync"]


def sync(device: str) -> None:
    """Wait for the device's queued work (CUDA), so that wall-clock times are the work's."""
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def process_peak_memory(device: str) -> int:
    """Peak resident set of this process so far (CPU), or peak CUDA allocation since the last reset."""
    if str(device).startswith("cuda"):
        return torch.cuda.max_memory_allocated()
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


class PeakMemory:
    """Peak resident memory (CPU, sampled every 2 ms from /proc) or CUDA allocation inside a ``with``."""

    def __init__(self, device: str) -> None:
        self.device = str(device)
        self.peak = 0

    @staticmethod
    def _rss() -> int:
        try:
            with open("/proc/self/statm") as stream:
                return int(stream.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:  # not Linux: the process's peak so far
            return process_peak_memory("cpu")

    def _sample(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(0.002)

    def __enter__(self) -> "PeakMemory":
        if self.device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
            return self
        self.peak = self._rss()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.startswith("cuda"):
            self.peak = torch.cuda.max_memory_allocated()
            return
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())


class ForwardTimer:
    """Wall time spent in a module's forward calls (hooks); reset ``total`` before each step."""

    def __init__(self, module: torch.nn.Module, device: str) -> None:
        self.device, self.total, self._start = device, 0.0, 0.0
        module.register_forward_pre_hook(self._pre)
        module.register_forward_hook(self._post)

    def _pre(self, module, inputs) -> None:
        sync(self.device)
        self._start = time.perf_counter()

    def _post(self, module, inputs, output) -> None:
        sync(self.device)
        self.total += time.perf_counter() - self._start


def interleaved(steps: dict[str, Callable[[], dict]], warmup: int, repeats: int) -> dict[str, list[dict]]:
    """Run the step functions in turn ``warmup + repeats`` times (so that a change in machine load hits
    them all alike); keep the records after warm-up."""
    records: dict[str, list[dict]] = {name: [] for name in steps}
    for index in range(warmup + repeats):
        for name, step in steps.items():
            record = step()
            if index >= warmup:
                records[name].append(record)
            print(f"  {name} step {index + 1}/{warmup + repeats}: {record['step_seconds']:.3f} s", flush=True)
    return records


def median(records: list[dict], key: str) -> float:
    return statistics.median(record[key] for record in records)
