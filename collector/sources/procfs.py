"""Reading procfs/sysfs files cheaply, and turning cumulative counters into rates.

:class:`ProcFile` keeps the file descriptor open and re-reads it with
lseek(0) + read: procfs seq_file and single_open files regenerate their content
when the offset returns to 0 (fs/seq_file.c), so one open() per sample is saved.
bench/usage_sampling.py measures the gain against open()+read() per call.
"""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["MonotonicTotal", "ProcFile", "delta", "rate"]


class ProcFile:
    """One procfs/sysfs text file, opened on first read and kept open.

    ``read()`` raises OSError (FileNotFoundError when absent); after an error
    the descriptor is dropped and the next read opens the file again.
    """

    __slots__ = ("path", "_fd", "_size")

    def __init__(self, path: Path | str):
        self.path = str(path)
        self._fd: int | None = None
        self._size = 8192

    def read(self) -> str:
        try:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            else:
                os.lseek(self._fd, 0, os.SEEK_SET)
            chunk = os.read(self._fd, self._size)
            if len(chunk) < self._size:
                return chunk.decode("utf-8", "replace")
            # Larger than the buffer (e.g. /proc/stat with many CPUs): read the rest and grow.
            parts = [chunk]
            while chunk:
                chunk = os.read(self._fd, self._size)
                parts.append(chunk)
            data = b"".join(parts)
            self._size = max(self._size, 1 << len(data).bit_length())
            return data.decode("utf-8", "replace")
        except OSError:
            self.close()
            raise

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.close(fd)
            except OSError:
                pass

    def __del__(self) -> None:
        self.close()


def delta(prev: float | None, cur: float | None) -> float | None:
    """``cur - prev`` for a cumulative counter, or None when unknown or when it went backwards.

    A counter that goes backwards was reset (device removed and re-added, driver
    reload, a new boot); the kernel's 64-bit counters do not wrap in practice, so
    no wrap-around is assumed. The next interval's rate is valid again.
    """
    if prev is None or cur is None:
        return None
    d = cur - prev
    return d if d >= 0 else None


def rate(prev: float | None, cur: float | None, elapsed_s: float | None) -> float | None:
    """Per-second rate of a cumulative counter over ``elapsed_s``; None when unknown (see :func:`delta`)."""
    d = delta(prev, cur)
    if d is None or not elapsed_s or elapsed_s <= 0:
        return None
    return d / elapsed_s


class MonotonicTotal:
    """A host-wide sum of per-device counters that never goes backwards within a boot.

    A plain sum over the devices present drops when a device goes away (a veth
    of a stopped container, an unplugged disk) or when a device's counter
    restarts (an interface deleted and re-created under the same name). The
    processors reject a cumulative counter that goes backwards
    (counter_regression), so the bytes of departed or reset devices are kept
    in ``retired`` and stay in the total.
    """

    __slots__ = ("_last", "retired")

    def __init__(self) -> None:
        self._last: dict[str, int] = {}
        self.retired = 0

    def update(self, values: dict[str, int | None]) -> int:
        current = {k: v for k, v in values.items() if v is not None}
        for key, last in self._last.items():
            now = current.get(key)
            if now is None or now < last:  # gone, or its counter restarted from 0
                self.retired += last
        self._last = current
        return self.retired + sum(current.values())
