"""Pieces every benchmark here shares: random blobs, percentiles, and what /proc says about a process."""

from __future__ import annotations

import hashlib
import os
import statistics
from typing import Iterable, Sequence

MIB = 1024 * 1024
#: The target for one 1 GiB blob pushed and pulled: zotpy's peak RSS stays under this.
RSS_LIMIT_MIB = 200


def write_random_file(path: str, size: int) -> str:
    """Fill ``path`` with ``size`` random bytes (8 MiB at a time); their ``sha256:`` digest."""
    hasher = hashlib.sha256()
    with open(path, "wb") as stream:
        remaining = size
        while remaining:
            chunk = os.urandom(min(remaining, 8 * MIB))
            hasher.update(chunk)
            stream.write(chunk)
            remaining -= len(chunk)
    return "sha256:" + hasher.hexdigest()


def sha256_digest(data: bytes | memoryview) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def percentile(samples: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile (``fraction`` 0..1) of ``samples``; 0.0 when there are none."""
    if not samples:
        return 0.0
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def median(values: Iterable[float]) -> float:
    values = list(values)
    return statistics.median(values) if values else 0.0


# -- /proc -------------------------------------------------------------------------------------------

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process has used so far (its threads included)."""
    with open(f"/proc/{pid}/stat") as stream:
        fields = stream.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident memory (VmHWM) in MiB, since it started or since :func:`reset_peak_rss`."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for pid {pid}")


def reset_peak_rss(pid: int) -> bool:
    """Restart VmHWM from the current RSS (Linux ``clear_refs`` 5); False when not allowed."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as stream:
            stream.write("5")
    except OSError:
        return False
    return True


def machine_busy_seconds() -> float:
    """CPU seconds all processes of the machine have used so far (from /proc/stat)."""
    with open("/proc/stat") as stream:
        fields = [int(value) for value in stream.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / _TICKS


class ProcessWatch:
    """CPU seconds and peak RSS of named processes over one measurement, and for comparison the
    CPU seconds of this process (the load client), of the whole machine and, given its pid, of the
    S3 server every target shares (what each target's load costs it)."""

    def __init__(self, pids: dict[str, int], storage_pid: int | None = None) -> None:
        self.pids = dict(pids)
        self.storage_pid = storage_pid
        self.storage_before = cpu_seconds(storage_pid) if storage_pid is not None else 0.0
        self.peak_reset = all([reset_peak_rss(pid) for pid in self.pids.values()])
        self.cpu_before = {label: cpu_seconds(pid) for label, pid in self.pids.items()}
        self.client_before = cpu_seconds(os.getpid())
        self.machine_before = machine_busy_seconds()

    def finish(self) -> dict[str, dict[str, float]]:
        used = {
            label: {
                "cpu_seconds": round(cpu_seconds(pid) - self.cpu_before[label], 3),
                "peak_rss_mib": round(peak_rss_mib(pid), 1),
            }
            for label, pid in self.pids.items()
        }
        return used

    def others(self) -> dict[str, float]:
        used = {
            "client_cpu_seconds": round(cpu_seconds(os.getpid()) - self.client_before, 3),
            "machine_cpu_seconds": round(machine_busy_seconds() - self.machine_before, 3),
        }
        if self.storage_pid is not None:
            used["storage_cpu_seconds"] = round(cpu_seconds(self.storage_pid) - self.storage_before, 3)
        return used
