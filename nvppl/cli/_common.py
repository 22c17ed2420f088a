"""What every command shares: the error type, argument types, checks of input
and output paths, atomic writes of outputs and the printing of reports.

An output is checked before any long computation (:func:`output_file`,
:func:`output_dir`) but nothing is created then: the folders above an output
appear only when it is written (:func:`write_output`, :func:`write_folder`),
and a failed write leaves neither a partial file nor new folders behind.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path

from .._files import atomic_dir
from .._validate import integer

__all__ = [
    "CLIError", "Parser", "Formatter", "paragraph", "command_parser", "SPEC_HELP", "int_arg", "int_list",
    "input_file", "output_file", "output_dir", "write_output", "write_folder", "one_line", "prefixed", "note",
    "print_rows", "print_resources",
]

SPEC_HELP = """\
spec file (YAML .yaml/.yml or JSON .json):
  model:                     # VesicleModel.from_spec options
    n_types: 1
    lifetime: geometric      # or countdown
    priors:                  # per Params field: a prior or a fixed value
      u: {dist: Normal, loc: 0, scale: 2}
      a: 0.0                 # fixed, not inferred
  substrate:                 # optional
    allow_stay: true         # default true
    covariates: [x]          # numeric node attributes (GraphML graphs)
  params:                    # optional, used by 'simulate': Params fields
    delta: [0.08]            # shape (K,); a number is broadcast to the field shape
    # T has shape (K, n, M): row T[k][i] is over node i's candidates in sorted
    # node order (i itself included when allow_stay), zero-padded to M slots

graph file: GraphML (.graphml) or an edge list (any other name: one 'u v' pair
per line, '#' starts a comment). Node labels that all look like integers are
read as integers."""


class CLIError(Exception):
    """An error in the command-line input, reported as ``nvppl: error: <message>``."""


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors become :class:`CLIError` (one line, exit 2)."""

    def error(self, message):  # noqa: D102 - argparse hook
        raise CLIError(f"{message} (see '{self.prog} --help')")


class Formatter(argparse.RawDescriptionHelpFormatter):
    """Keep the layout of epilogs; wider option column."""

    def __init__(self, prog):
        super().__init__(prog, max_help_position=30)


def paragraph(text: str) -> str:
    """A description paragraph wrapped for the help text."""
    return textwrap.fill(" ".join(text.split()), width=78)


def command_parser(subparsers, name: str, summary: str, description: str, epilog=None, run=None):
    """Add command ``name`` to the subparsers of the ``nvppl`` parser.

    Parameters
    ----------
    subparsers
        From ``parser.add_subparsers()``.
    name, summary : str
        The command and its line in ``nvppl --help``.
    description : str
        The paragraph of ``nvppl NAME --help``, wrapped.
    epilog : str, optional
        Text after the options, kept as written.
    run : callable, optional
        Runs the command with the parsed arguments (``args.func``).

    Returns
    -------
    argparse.ArgumentParser
        The command's parser, for its arguments.
    """
    parser = subparsers.add_parser(name, formatter_class=Formatter, help=summary,
                                   description=paragraph(description), epilog=epilog)
    parser.set_defaults(func=run)
    return parser


# ---------------------------------------------------------------- arguments
def int_arg(minimum: int):
    """An argparse type: an integer ``>= minimum`` (the message calls it ``N``, the options' metavar)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        return integer(value, "N", minimum, error=argparse.ArgumentTypeError)

    parse.__name__ = "integer"
    return parse


def int_list(text: str) -> list:
    """An argparse type: comma-separated non-negative integers, none repeated (``--draws 3,7``)."""
    parse = int_arg(0)
    items = [t.strip() for t in text.split(",")]
    if not text.strip() or any(not t for t in items):
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 3,7, got {text!r}")
    values = [parse(t) for t in items]
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise argparse.ArgumentTypeError(f"draw {repeated[0]} is listed twice")
    return values


# ------------------------------------------------------------------- paths
def input_file(path, what: str) -> Path:
    """``path`` as a Path, checked to be an existing regular file (``what`` names it in messages)."""
    p = Path(path)
    if not p.exists():
        raise CLIError(f"{what} file {str(path)!r} does not exist")
    if not p.is_file():
        raise CLIError(f"{what} file {str(path)!r} is not a regular file")
    return p


def _writable_ancestor(path, what: str, kind: str) -> None:
    """Check that the nearest existing folder above ``path`` (or ``path`` itself) can be written."""
    existing = Path(path).absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise CLIError(f"cannot create the {kind}: {str(existing)!r} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise CLIError(f"{what} {str(path)!r} is not writable")


def output_file(path, what: str) -> Path:
    """Check, before any long computation, that file ``path`` can be written; create nothing."""
    p = Path(path)
    if p.is_dir():
        raise CLIError(f"{what} {str(path)!r} is a directory; give a file name")
    if p.exists() and not os.access(p, os.W_OK):
        raise CLIError(f"{what} {str(path)!r} is not writable")
    _writable_ancestor(p.parent, what, f"directory of {what} {str(path)!r}")
    return p


def output_dir(path, what: str) -> Path:
    """Check, before any computation, that folder ``path`` can be created or written; create nothing."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise CLIError(f"{what} {str(path)!r} exists and is not a directory")
    _writable_ancestor(p, what, f"{what} {str(path)!r}")
    return p


@contextlib.contextmanager
def _new_parents(path):
    """Create the missing folders above ``path``; remove them again if the block fails."""
    missing = []
    folder = Path(path).absolute().parent
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    try:
        for folder in reversed(missing):
            folder.mkdir(exist_ok=True)
        yield
    except BaseException:
        for folder in missing:
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


def _reason(exc: OSError) -> str:
    return exc.strerror or one_line(exc)


def write_output(path, what: str, write) -> None:
    """Write an output with ``write(path)``, which writes atomically (through :mod:`nvppl._files`).

    The folders above ``path`` are created first and removed again if the
    write fails.

    Parameters
    ----------
    path : Path
    what : str
        Names the output in messages (``"traces"``, ``"fit"``, ``"image"``).
    write : callable
        Writes the file or folder ``path``; on failure it leaves a previous one
        as it was.

    Raises
    ------
    CLIError
        When the write fails (a full disk, a file-size limit, ...): the message
        names the output and the reason and says that nothing was written or
        that the previous output is unchanged.
    """
    path = Path(path)
    kept = f"the previous {'folder' if path.is_dir() else 'file'} is unchanged" if path.exists() else \
        "nothing was written"
    try:
        with _new_parents(path):
            write(path)
    except OSError as exc:
        raise CLIError(f"cannot write the {what} {str(path)!r}: {_reason(exc)}; {kept}") from None


def write_folder(path, what: str, fill):
    """Write files into folder ``path`` with ``fill(folder)`` and return what it returns.

    A new folder appears only complete (it is filled under a temporary name,
    see :func:`nvppl._files.atomic_dir`); into an existing folder the files are
    written one by one, each atomically, and its other files are kept.

    Raises
    ------
    CLIError
        When a write fails; a new folder is then not created.
    """
    path = Path(path)
    try:
        if path.is_dir():
            return fill(path)
        with _new_parents(path), atomic_dir(path) as folder:
            return fill(folder)
    except OSError as exc:
        raise CLIError(f"cannot write the {what} into {str(path)!r}: {_reason(exc)}") from None


# ---------------------------------------------------------------- messages
def one_line(exc) -> str:
    """The message of an exception on one line."""
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, KeyError) and len(exc.args) == 1:
        text = str(exc.args[0])
    return " ".join(text.split())


def prefixed(path, what: str, message: str) -> str:
    """``what + message``, preceded by the file name unless the message names it."""
    return f"{what}{message}" if str(path) in message else f"{path}: {what}{message}"


def note(message: str) -> None:
    """Print ``nvppl: note: message`` on standard error."""
    print(f"nvppl: note: {message}", file=sys.stderr)


def print_rows(rows) -> None:
    """Print ``(name, value)`` rows as an indented two-column table."""
    for name, value in rows:
        print(f"  {name:<26} {value}")


def print_resources(res: Mapping) -> None:
    """Print the resources of a :class:`~nvppl.backend.ChipProgram`; per-core maxima against the core's size."""
    rows = []
    for name, value in res.items():
        if name == "cores_available":
            continue
        if name == "cores":
            value = f"{value} of {res.get('cores_available', '?')}"
        elif isinstance(value, tuple):
            value = f"{value[0]} of {value[1]}"
        rows.append((name, value))
    print("resources:")
    print_rows(rows)
