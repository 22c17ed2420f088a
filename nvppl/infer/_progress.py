"""Progress bars of long fits (tqdm, which comes with NumPyro)."""

from __future__ import annotations

import threading

__all__ = ["progress_bar", "ChainProgress"]


def progress_bar(on: bool, total: int, desc: str, leave: bool = False):
    """A tqdm bar of ``total`` iterations, or ``None`` when ``on`` is false or tqdm
    is missing."""
    if not on:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm comes with numpyro
        return None
    return tqdm(total=total, desc=desc, leave=leave)


class ChainProgress:
    """One bar over the iterations of all chains, fed from several threads (and
    from compiled code through a host callback) by :meth:`add`; a context manager
    that makes itself the current bar (:data:`CURRENT`)."""

    def __init__(self, total: int, desc: str):
        self.bar = progress_bar(True, total, desc, leave=True)
        self.lock = threading.Lock()

    def add(self, n: int) -> None:
        if self.bar is not None:
            with self.lock:
                self.bar.update(n)

    def __enter__(self):
        CURRENT[0] = self
        return self

    def __exit__(self, *exc):
        CURRENT[0] = None
        if self.bar is not None:
            self.bar.close()


#: The bar that compiled chains report to (one at a time).
CURRENT: list = [None]
