"""Command-line interface: ``nvppl simulate``, ``fit``, ``summary``, ``deploy`` and ``emulate``.

Every command reads files and writes files:

* ``nvppl simulate --graph G --spec S -o traces.nc`` samples vesicle traces
  from the model in the spec file and writes them to NetCDF;
* ``nvppl fit traces.nc --graph G --spec S -o fit.nc`` fits the model to the
  traces with NUTS and writes the fit (an ArviZ InferenceData) to NetCDF;
* ``nvppl summary fit.nc`` prints the posterior summary of a saved fit;
* ``nvppl deploy fit.nc --chip chip.yaml -o image/`` compiles the fitted model
  for the Darwin3-like chip (:func:`nvppl.backend.compile`) and writes its
  configuration image, reporting the resources and the quantisation error;
* ``nvppl emulate image/ --ticks 200 -o traces.nc`` runs an image on the
  emulator (:class:`nvppl.backend.Emulator`), writes the vesicle traces and
  reports the traffic and energy.

Each command is a module of this package (:mod:`nvppl.cli.simulate`, ...)
with ``add_parser(subparsers)`` and ``run(args)``. The spec file is read by
:func:`nvppl.spec.read_spec`; the graph file is GraphML (``.graphml``) or a
whitespace-separated edge list (any other name). The chip file of ``deploy``
is YAML holding :class:`~nvppl.backend.ChipConfig` fields (as
:meth:`ChipConfig.to_yaml <nvppl.backend.ChipConfig.to_yaml>` writes them);
fields it does not give keep their defaults.

Every output is written atomically once the computation is done: a failed or
interrupted command leaves a previous output as it was, and neither a partial
file nor new folders behind.

Errors in the input (a missing file, a bad spec, invalid traces, a model the
chip cannot run, an output that cannot be written) are reported as one line
``nvppl: error: ...`` on standard error with exit status 2.

Examples
--------
From a shell (``examples/cli`` holds a graph and a spec)::

    nvppl simulate --graph ring.edgelist --spec spec.yaml -o traces.nc --steps 100 --runs 2
    nvppl fit traces.nc --graph ring.edgelist --spec spec.yaml -o fit.nc --plots plots/
    nvppl summary fit.nc
    nvppl deploy fit.nc -o image/ --nodes-per-core 4
    nvppl emulate image/ --ticks 200 --runs 2 -o chip_traces.nc

From Python, :func:`main` takes the arguments and returns the exit status:

>>> main(["summary", "missing.nc"])  # doctest: +SKIP
nvppl: error: fit file 'missing.nc' does not exist
2
"""

from __future__ import annotations

import argparse
import sys

from .._version import __version__
from ..spec import read_spec  # noqa: F401 - also importable from here
from . import deploy, emulate, fit, simulate, summary
from ._common import SPEC_HELP, CLIError, Formatter, Parser, one_line, paragraph
from ._inputs import build_model, build_substrate, read_graph, spec_params
from .summary import write_plots  # noqa: F401 - also importable from here

__all__ = [
    "main", "build_parser", "COMMANDS", "CLIError", "read_graph", "build_substrate", "build_model", "spec_params",
]

#: The command modules, in the order of ``nvppl --help``.
COMMANDS = (simulate, fit, summary, deploy, emulate)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``nvppl`` command.

    Returns
    -------
    argparse.ArgumentParser
        A parser with one subcommand per module of :data:`COMMANDS`; each
        parsed namespace has a ``func`` attribute that runs the command.
    """
    parser = Parser(
        prog="nvppl",
        description=paragraph("Neuro-Vesicle models on graphs: simulate traces, fit models with NUTS, "
                              "summarise fits, deploy fits on the Darwin3-like chip and run them on its "
                              "emulator. Files in, files out."),
        epilog="Run 'nvppl COMMAND --help' for the options of a command.\n\n" + SPEC_HELP,
        formatter_class=Formatter,
    )
    parser.add_argument("--version", action="version", version=f"nvppl {__version__}",
                        help="print the version and exit")
    subparsers = parser.add_subparsers(dest="command", title="commands", metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv=None) -> int:
    """Run the ``nvppl`` command line.

    Parameters
    ----------
    argv : list of str, optional
        Arguments without the program name (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status: 0 on success, 2 on an input error or an output that
        cannot be written (reported on standard error as one line
        ``nvppl: error: ...``), 130 when interrupted. ``--help`` and
        ``--version`` print and raise ``SystemExit(0)`` as usual with
        :mod:`argparse`.
    """
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:
            where = f"nvppl {args.command}" if args.command else "nvppl"
            raise CLIError(f"unrecognized argument(s): {' '.join(extra)} (see '{where} --help')")
        if args.command is None:
            names = [command.__name__.rsplit(".", 1)[1] for command in COMMANDS]
            raise CLIError(f"a command is required: {', '.join(names[:-1])} or {names[-1]} (see 'nvppl --help')")
        return int(args.func(args) or 0)
    except CLIError as exc:
        message = str(exc)
    except (ValueError, OSError) as exc:  # includes nvppl.TraceError and nvppl.SpecError
        message = one_line(exc)
    except KeyboardInterrupt:
        print("nvppl: interrupted", file=sys.stderr)
        return 130
    print(f"nvppl: error: {' '.join(message.split())}", file=sys.stderr)
    return 2
