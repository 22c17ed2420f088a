"""Atomic writes: every file and folder nvppl writes goes through this module.

A file is written to a temporary file in the same folder, flushed to disk, and
moved over the target with :func:`os.replace`, so that a failed or interrupted
write (a full disk, a file-size limit, an error while the content is made)
leaves the previous file as it was and no partial file behind. A folder of
files (CSV traces, a chip image) is assembled in a temporary sibling folder and
put in place only when complete.

NetCDF files are assembled in memory and then written like any other file: the
HDF5 library, writing to disk itself, can leave the process in a state that
crashes on a failed write.

Examples
--------
>>> import pathlib, tempfile
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> write_text(folder / "a.txt", "first")
>>> try:
...     with atomic_file(folder / "a.txt", "w") as f:
...         _ = f.write("half")
...         raise RuntimeError("interrupted")
... except RuntimeError:
...     pass
>>> (folder / "a.txt").read_text(), sorted(p.name for p in folder.iterdir())
('first', ['a.txt'])
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import shutil
from pathlib import Path

__all__ = ["atomic_file", "write_bytes", "write_text", "write_netcdf", "atomic_dir", "save_figure"]


def _create(target: Path, suffix: str, make):
    """Create a new file or folder named after ``target`` in its folder (the
    usual permissions under the umask, unlike :mod:`tempfile`)."""
    for _ in range(100):
        name = target.parent / f".{target.name}.{secrets.token_hex(4)}{suffix}"
        try:
            return make(name), name
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {target}")


@contextlib.contextmanager
def atomic_file(path, mode: str = "wb"):
    """Open a temporary file beside ``path`` for writing; on a clean exit it
    replaces ``path``, on an error it is removed and ``path`` is untouched.

    Parameters
    ----------
    path : str or Path
    mode : {"wb", "w"}
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w', got {mode!r}")
    target = Path(path)
    fd, tmp = _create(target, ".tmp", lambda name: os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_bytes(path, data) -> None:
    """Write ``data`` (bytes or a buffer) to ``path`` atomically."""
    with atomic_file(path, "wb") as f:
        f.write(data)


def write_text(path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_file(path, "w") as f:
        f.write(text)


def write_netcdf(path, fill) -> None:
    """Write a NetCDF (HDF5) file atomically: ``fill(buffer)`` writes the file's
    content into an in-memory buffer (e.g. ``dataset.to_netcdf(buffer,
    engine="h5netcdf")``), which is then written to ``path``."""
    buffer = io.BytesIO()
    fill(buffer)
    write_bytes(path, buffer.getbuffer())


@contextlib.contextmanager
def atomic_dir(path):
    """Yield a temporary folder beside ``path`` to fill; on a clean exit it
    takes the place of ``path`` (an existing folder there is replaced only then),
    on an error it is removed and ``path`` is untouched."""
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise NotADirectoryError(f"{target} exists and is not a folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(_create(target, ".tmp", lambda name: os.mkdir(name, 0o777))[1])
    try:
        yield tmp
        old = None
        if target.exists():
            old = Path(_create(target, ".old", lambda name: os.mkdir(name, 0o777))[1])
            os.replace(target, old / "previous")
        try:
            os.replace(tmp, target)
        except BaseException:
            if old is not None:
                os.replace(old / "previous", target)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def save_figure(fig, path, **kwargs) -> None:
    """Save a matplotlib figure to ``path`` atomically (the format from the suffix)."""
    buffer = io.BytesIO()
    fmt = Path(path).suffix.lstrip(".").lower() or None
    fig.savefig(buffer, format=fmt, **kwargs)
    write_bytes(path, buffer.getbuffer())
