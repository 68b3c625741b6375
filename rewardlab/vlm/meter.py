"""Throughput and peak memory of a VLM run: the report its metrics carry and bench/vlm.py prints."""

from __future__ import annotations

import resource
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

RSS_UNIT = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is in bytes on macOS, KiB on Linux


def peak_memory(device: str) -> dict[str, Any]:
    """Return the peak memory so far: CUDA's max allocated on a GPU, else the process's peak RSS.

    The RSS peak covers the whole process (loading included) and cannot be reset; CUDA's is reset by Meter.
    """
    if device.startswith("cuda"):
        return {"peak_memory_bytes": int(torch.cuda.max_memory_allocated(device)), "peak_memory_kind": "cuda_allocated"}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * RSS_UNIT
    return {"peak_memory_bytes": int(peak), "peak_memory_kind": "process_rss"}


class Meter:
    """Pairs and seconds per phase ("train_multimodal", "score", …), reported as pairs per second."""

    timer = time.perf_counter  # a class attribute, so a test can swap the clock

    def __init__(self, device: str) -> None:
        self.device = device
        self.pairs: Counter[str] = Counter()
        self.seconds: Counter[str] = Counter()
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats(device)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = self.timer()
        try:
            yield
        finally:
            self.seconds[name] += self.timer() - started

    def count(self, name: str, pairs: int) -> None:
        self.pairs[name] += pairs

    def report(self) -> dict[str, Any]:
        rates = {
            f"{name}_pairs_per_second": round(self.pairs[name] / max(self.seconds[name], 1e-9), 3)
            for name in sorted(self.seconds)
        }
        seconds = {f"{name}_seconds": round(value, 3) for name, value in sorted(self.seconds.items())}
        pairs = {f"{name}_pairs": count for name, count in sorted(self.pairs.items())}
        return rates | seconds | pairs | peak_memory(self.device)
