"""Small process checks shared by the tests: open descriptors, memory, exception chains."""

from __future__ import annotations

import os
from typing import List


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def proc_status_bytes(field: str) -> int:
    """A size line of /proc/self/status (``VmRSS``: resident now, ``VmHWM``: its peak) in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0  # pragma: no cover


def rss_bytes() -> int:
    return proc_status_bytes("VmRSS")


def peak_rss() -> int:
    """Peak RSS of this process (VmHWM); :func:`reset_peak_rss` first, where the kernel allows it."""
    return proc_status_bytes("VmHWM")


def reset_peak_rss() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass  # the delta is then measured against an older peak: still an upper bound


def exception_chain(exc: BaseException) -> List[BaseException]:
    """``exc`` and everything reachable through ``__cause__`` and ``__context__``."""
    seen: List[BaseException] = []
    todo: List[BaseException] = [exc]
    while todo:
        e = todo.pop()
        if any(e is s for s in seen):
            continue
        seen.append(e)
        todo += [x for x in (e.__cause__, e.__context__) if x is not None]
    return seen
