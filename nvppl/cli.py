"""Command-line interface: ``nvppl simulate``, ``fit``, ``summary``, ``deploy`` and ``emulate``.

Every command reads files and writes files:

* ``nvppl simulate --graph G --spec S -o traces.nc`` samples vesicle traces
  (DESIGN §1.3) from the model in the spec file and writes them to NetCDF;
* ``nvppl fit traces.nc --graph G --spec S -o fit.nc`` fits the model to the
  traces with NUTS and writes the fit (an ArviZ InferenceData) to NetCDF;
* ``nvppl summary fit.nc`` prints the posterior summary of a saved fit;
* ``nvppl deploy fit.nc --chip chip.yaml -o image/`` compiles the fitted model
  for the Darwin3-like chip (:func:`nvppl.backend.compile`) and writes its
  configuration image, reporting the resources and the quantisation error;
* ``nvppl emulate image/ --ticks 200 -o traces.nc`` runs an image on the
  emulator (:class:`nvppl.backend.Emulator`), writes the vesicle traces and
  reports the traffic and energy.

The chip file of ``deploy`` is YAML holding :class:`~nvppl.backend.ChipConfig`
fields (as :meth:`ChipConfig.to_yaml <nvppl.backend.ChipConfig.to_yaml>`
writes them); fields it does not give keep their defaults.

The graph file is GraphML (``.graphml``) or a whitespace-separated edge list
(any other name). The spec file is YAML (``.yaml``/``.yml``) or JSON (``.json``)
with the sections ``model`` (the dict of :meth:`VesicleModel.from_spec
<nvppl.model.VesicleModel.from_spec>`), ``substrate`` (``allow_stay``,
``covariates``) and ``params`` (values of :class:`~nvppl.params.Params`
fields used by ``simulate``).

Errors in the input (a missing file, a bad spec, invalid traces, a model the
chip cannot run) are reported as one line ``nvppl: error: ...`` on standard
error with exit status 2.

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
import contextlib
import json
import os
import re
import sys
import textwrap
import warnings
from collections.abc import Mapping
from pathlib import Path

__all__ = [
    "main", "build_parser", "read_graph", "read_spec", "build_substrate", "build_model",
    "spec_params", "write_plots", "CLIError",
]

#: Sections of a spec file.
SPEC_SECTIONS = ("model", "substrate", "params")
#: Keys of the ``substrate`` section.
SUBSTRATE_KEYS = ("allow_stay", "covariates")
#: Files written by ``--plots DIR``.
PLOT_FILES = ("trace.png", "rank.png", "ppc.png")

_SPEC_HELP = """\
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


_CHIP_HELP = """\
chip file (YAML): ChipConfig fields; fields not given keep their defaults
  width: 24                  # mesh size in tiles (default 24 x 24)
  height: 24
  mailbox_words: 1024        # vesicle slots of a node core
  synapse_words: 262144      # table memory of a core (48-bit words)
  seed: 0                    # seed of the on-chip random generators
  pj_per_hop: 3.5            # energy costs per event, in pJ
Write every field with nvppl.backend.ChipConfig().to_yaml('chip.yaml')."""


class CLIError(Exception):
    """An error in the command-line input, reported as ``nvppl: error: <message>``."""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors become :class:`CLIError` (one line, exit 2)."""

    def error(self, message):  # noqa: D102 - argparse hook
        raise CLIError(f"{message} (see '{self.prog} --help')")


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keep the layout of epilogs; wider option column."""

    def __init__(self, prog):
        super().__init__(prog, max_help_position=30)


def _para(text: str) -> str:
    """A description paragraph wrapped for the help text."""
    return textwrap.fill(" ".join(text.split()), width=78)


# ---------------------------------------------------------------- arguments
def _int_arg(minimum: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
            raise argparse.ArgumentTypeError(f"must be {what}, got {value}")
        return value

    parse.__name__ = "integer"
    return parse


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``nvppl`` command.

    Returns
    -------
    argparse.ArgumentParser
        A parser with the subcommands ``simulate``, ``fit``, ``summary``,
        ``deploy`` and ``emulate``;
        each parsed namespace has a ``func`` attribute that runs the command.
    """
    from . import __version__

    parser = _Parser(
        prog="nvppl",
        description=_para("Neuro-Vesicle models on graphs: simulate traces, fit models with NUTS, "
                          "summarise fits, deploy fits on the Darwin3-like chip and run them on its "
                          "emulator. Files in, files out."),
        epilog="Run 'nvppl COMMAND --help' for the options of a command.\n\n" + _SPEC_HELP,
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"nvppl {__version__}",
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="command", title="commands", metavar="COMMAND")

    # ------------------------------------------------------------ simulate
    p = sub.add_parser(
        "simulate", formatter_class=_Formatter,
        help="simulate vesicle traces from a model spec and write them to NetCDF",
        description=_para("Build the substrate from GRAPH and the model from SPEC, simulate "
                          "independent runs of the vesicle process and write the traces to NetCDF. "
                          "Parameters come from the spec's 'params' section; fields it does not give "
                          "keep the model's defaults (model.default_params())."),
        epilog=_SPEC_HELP,
    )
    _graph_spec_args(p)
    p.add_argument("-o", "--output", required=True, metavar="TRACES",
                   help="NetCDF file to write the traces to (e.g. traces.nc)")
    p.add_argument("--steps", type=_int_arg(1), default=200, metavar="N",
                   help="steps per run (default: 200)")
    p.add_argument("--runs", type=_int_arg(1), default=4, metavar="N",
                   help="independent runs (default: 4)")
    p.add_argument("--seed", type=_int_arg(0), default=0, metavar="N",
                   help="random seed (default: 0); the same seed gives the same traces")
    p.add_argument("--from-prior", action="store_true",
                   help="draw the parameters from the model's priors with "
                        "model.sample_params(SEED) instead of using the spec's 'params' section "
                        "(fixed values in the priors are kept); the simulation then uses a key "
                        "derived from SEED")
    p.add_argument("--backend", choices=("auto", "compiled", "numpyro"), default="auto",
                   help="simulator: the compiled core ('compiled', which 'auto' picks) or the NumPyro "
                        "program ('numpyro'); both draw from the same distribution")
    p.add_argument("--threads", type=_int_arg(1), default=None, metavar="N",
                   help="threads of the compiled backend (default: every core); the traces do not "
                        "depend on it")
    p.add_argument("--capacity", type=_int_arg(1), default=None, metavar="N",
                   help="vesicle slots per run of the NumPyro backend (default: chosen from the "
                        "parameters with a wide margin); raise it if the simulation reports an "
                        "overflow. The compiled backend has no such limit")
    p.set_defaults(func=_cmd_simulate)

    # ----------------------------------------------------------------- fit
    p = sub.add_parser(
        "fit", formatter_class=_Formatter,
        help="fit a model to traces with NUTS and write the fit to NetCDF",
        description=_para("Load TRACES (validated against the substrate built from GRAPH), fit the "
                          "model of SPEC with NUTS on the exact trace likelihood, write the fit "
                          "(an ArviZ InferenceData with the model specification) to NetCDF and print "
                          "the posterior summary. The spec's 'params' section is checked but not used."),
        epilog=_SPEC_HELP,
    )
    p.add_argument("traces", metavar="TRACES", help="NetCDF traces written by 'nvppl simulate' "
                   "(or Traces.to_netcdf)")
    _graph_spec_args(p)
    p.add_argument("-o", "--output", required=True, metavar="FIT",
                   help="NetCDF file to write the fit to (e.g. fit.nc); read it with "
                        "'nvppl summary' or nvppl.load_fit")
    p.add_argument("--samples", type=_int_arg(1), default=1000, metavar="N",
                   help="posterior draws kept per chain (default: 1000)")
    p.add_argument("--warmup", type=_int_arg(0), default=1000, metavar="N",
                   help="warm-up iterations per chain (default: 1000)")
    p.add_argument("--chains", type=_int_arg(1), default=4, metavar="N",
                   help="MCMC chains (default: 4)")
    p.add_argument("--seed", type=_int_arg(0), default=0, metavar="N",
                   help="random seed of the sampler (default: 0)")
    p.add_argument("--no-progress", action="store_true",
                   help="do not show the sampler's progress bar")
    _plots_arg(p)
    p.set_defaults(func=_cmd_fit)

    # ------------------------------------------------------------- summary
    p = sub.add_parser(
        "summary", formatter_class=_Formatter,
        help="print the posterior summary of a saved fit",
        description=_para("Load FIT (written by 'nvppl fit' or Fit.to_netcdf) and print a short "
                          "header (method, chains, draws, inferred fields) and the ArviZ summary "
                          "table of the inferred parameters."),
    )
    p.add_argument("fit", metavar="FIT", help="NetCDF fit written by 'nvppl fit'")
    _plots_arg(p)
    p.set_defaults(func=_cmd_summary)

    # -------------------------------------------------------------- deploy
    p = sub.add_parser(
        "deploy", formatter_class=_Formatter,
        help="compile a fit for the chip and write its configuration image",
        description=_para("Load FIT (written by 'nvppl fit' or Fit.to_netcdf), quantise the fitted "
                          "model for the Darwin3-like chip (nvppl.backend.compile), place its graph "
                          "nodes on node cores and write the configuration image (manifest.yaml and one "
                          "core_X_Y.txt per core) into IMAGE_DIR. Deploys the posterior mean unless "
                          "--draw or --draws picks posterior draws. Prints the resources used, the "
                          "quantisation error per kernel and the mean tile hops of a migration step. A "
                          "model feature without a chip mapping, or a program too large for the chip, "
                          "is an error and nothing is written."),
        epilog=_CHIP_HELP,
    )
    p.add_argument("fit", metavar="FIT", help="NetCDF fit written by 'nvppl fit'")
    p.add_argument("--chip", metavar="CHIP", default=None,
                   help="chip file (YAML with ChipConfig fields; default: ChipConfig())")
    p.add_argument("-o", "--output", required=True, metavar="IMAGE_DIR",
                   help="directory to write the image to (created if needed); with --draws, one "
                        "subdirectory draw_N per draw")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--draw", type=_int_arg(0), default=None, metavar="N",
                       help="deploy posterior draw N, counted over chains x draws (default: the "
                            "posterior mean)")
    which.add_argument("--draws", type=_int_list, default=None, metavar="N1,N2,...",
                       help="deploy several posterior draws, one image per draw in IMAGE_DIR/draw_N")
    p.add_argument("--nodes-per-core", type=_int_arg(1), default=None, metavar="N",
                   help="graph nodes per node core (default: as many as leave each core's mailbox room "
                        "for 8x their expected vesicles)")
    p.set_defaults(func=_cmd_deploy)

    # ------------------------------------------------------------- emulate
    p = sub.add_parser(
        "emulate", formatter_class=_Formatter,
        help="run a chip image on the emulator and write the vesicle traces to NetCDF",
        description=_para("Read the configuration image in IMAGE_DIR (written by 'nvppl deploy' or "
                          "ChipProgram.write), run it for N ticks on the event-driven emulator "
                          "(nvppl.backend.Emulator), write the vesicle traces to NetCDF and print the "
                          "vesicle and spike traffic, the energy estimate and the resources of the "
                          "program. The image must deploy a vesicle model. Read the traces with "
                          "Traces.from_netcdf(path, substrate) on the model's substrate."),
    )
    p.add_argument("image", metavar="IMAGE_DIR", help="image directory written by 'nvppl deploy'")
    p.add_argument("--ticks", type=_int_arg(1), required=True, metavar="N",
                   help="ticks per run (one tick is one step of the vesicle process)")
    p.add_argument("-o", "--output", required=True, metavar="TRACES",
                   help="NetCDF file to write the vesicle traces to (e.g. chip_traces.nc)")
    p.add_argument("--runs", type=_int_arg(1), default=1, metavar="N",
                   help="independent runs (default: 1); more than one only for an image without a "
                        "base network of neurons")
    p.add_argument("--seed", type=_int_arg(0), default=None, metavar="N",
                   help="seed of the on-chip random generators (default: the chip's seed in the "
                        "image); the same seed gives the same run")
    p.set_defaults(func=_cmd_emulate)
    return parser


def _int_list(text: str) -> list:
    """``--draws``: comma-separated non-negative integers, none repeated."""
    parse = _int_arg(0)
    items = [t.strip() for t in text.split(",")]
    if not text.strip() or any(not t for t in items):
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 3,7, got {text!r}")
    values = [parse(t) for t in items]
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise argparse.ArgumentTypeError(f"draw {repeated[0]} is listed twice")
    return values


def _plots_arg(p):
    p.add_argument("--plots", metavar="DIR", default=None,
                   help="also write diagnostic plots trace.png, rank.png and ppc.png into DIR "
                        "(created if needed)")


def _graph_spec_args(p):
    p.add_argument("--graph", required=True, metavar="GRAPH",
                   help="graph file: GraphML (.graphml) or an edge list (any other extension)")
    p.add_argument("--spec", required=True, metavar="SPEC",
                   help="model spec file: YAML (.yaml/.yml) or JSON (.json) with sections "
                        "'model', optional 'substrate' and 'params'")
    p.add_argument("--undirected", action="store_true",
                   help="take the graph as undirected: every edge can be crossed both ways "
                        "(default: an edge list is directed; GraphML follows its own declaration)")


# -------------------------------------------------------------------- input
def _input_file(path, what: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise CLIError(f"{what} file {str(path)!r} does not exist")
    if not p.is_file():
        raise CLIError(f"{what} file {str(path)!r} is not a regular file")
    return p


def _output_file(path, what: str) -> Path:
    """Check (before any long computation) that ``path`` can be written."""
    p = Path(path)
    if p.is_dir():
        raise CLIError(f"{what} {str(path)!r} is a directory; give a file name")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CLIError(f"cannot create the directory of {what} {str(path)!r}: {exc.strerror or exc}") from None
    if not os.access(p.parent, os.W_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise CLIError(f"{what} {str(path)!r} is not writable")
    return p


def _plot_dir(path) -> Path:
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise CLIError(f"plot directory {str(path)!r} exists and is not a directory")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CLIError(f"cannot create the plot directory {str(path)!r}: {exc.strerror or exc}") from None
    if not os.access(p, os.W_OK):
        raise CLIError(f"plot directory {str(path)!r} is not writable")
    return p


_INT_LABEL = re.compile(r"[+-]?\d+")


def read_graph(path, undirected: bool = False):
    """Read a graph file for the command line.

    Parameters
    ----------
    path : str or Path
        A GraphML file (``.graphml``, read with :func:`networkx.read_graphml`,
        node attributes kept) or an edge list (any other name, read with
        :func:`networkx.read_edgelist`: one ``u v`` pair per line, extra columns
        ignored, ``#`` starts a comment).
    undirected : bool, default False
        Return an undirected graph (every edge usable both ways). Otherwise an
        edge list gives a ``DiGraph`` and a GraphML file keeps its declared
        direction.

    Returns
    -------
    networkx.DiGraph or networkx.Graph
        When every node label is an integer written in decimal, labels are
        ``int``; otherwise they stay strings. Parallel edges of a GraphML
        multigraph are merged (they carry no meaning for vesicle moves).

    Raises
    ------
    CLIError
        A missing or unreadable file, or a file without nodes.
    """
    import networkx as nx

    p = _input_file(path, "graph")
    if p.suffix.lower() == ".graphml":
        try:
            G = nx.read_graphml(p)
        except Exception as exc:  # GraphML parse errors come in many types
            raise CLIError(f"{path}: cannot read the GraphML graph: {_text(exc)}") from None
        if G.is_multigraph():
            G = nx.DiGraph(G) if G.is_directed() else nx.Graph(G)
        if undirected and G.is_directed():
            G = G.to_undirected()
    else:
        try:
            G = nx.read_edgelist(p, create_using=nx.Graph if undirected else nx.DiGraph, data=False)
        except (ValueError, TypeError, IndexError) as exc:
            raise CLIError(f"{path}: cannot read the edge list: {_text(exc)}") from None
    if G.number_of_nodes() == 0:
        raise CLIError(f"{path}: the graph has no nodes (an edge list needs one 'u v' pair per line)")
    labels = list(G.nodes)
    if all(isinstance(x, str) and _INT_LABEL.fullmatch(x.strip()) for x in labels):
        mapping = {x: int(x) for x in labels}
        if len(set(mapping.values())) == len(mapping):
            G = nx.relabel_nodes(G, mapping, copy=True)
    return G


def _yaml_loader():
    """A safe YAML loader that also reads ``1e-3`` (no decimal point) as a float."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                    |[-+]?\.(?:inf|Inf|INF)
                    |\.(?:nan|NaN|NAN))$""", re.X),
        list("-+0123456789."),
    )
    return Loader


def read_spec(path) -> dict:
    """Read and check the layout of a spec file.

    Parameters
    ----------
    path : str or Path
        YAML (``.yaml``/``.yml``) or JSON (``.json``) file holding a mapping with
        the sections ``model`` (required: the dict of
        :meth:`VesicleModel.from_spec <nvppl.model.VesicleModel.from_spec>`),
        ``substrate`` (optional: ``allow_stay``, default true, and
        ``covariates``, a list of node attribute names) and ``params``
        (optional: Params field names to numbers or nested lists).

    Returns
    -------
    dict
        ``{"model": dict, "substrate": {"allow_stay": bool, "covariates": list},
        "params": dict}``.

    Raises
    ------
    CLIError
        A missing file, an unknown extension, a syntax error, an unknown section
        or key (named in the message) or a value of the wrong kind.
    """
    p = _input_file(path, "spec")
    suffix = p.suffix.lower()
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CLIError(f"{path}: cannot read the spec file: {_text(exc)}") from None
    if suffix in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.load(text, Loader=_yaml_loader())  # noqa: S506 - a SafeLoader subclass
        except yaml.YAMLError as exc:
            raise CLIError(f"{path}: invalid YAML: {_yaml_problem(exc)}") from None
    elif suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CLIError(f"{path}: invalid JSON: {exc}") from None
    else:
        raise CLIError(f"{path}: unknown spec format {suffix or '(no extension)'!r}; "
                       "use a .yaml, .yml or .json file")
    if not isinstance(data, Mapping):
        raise CLIError(f"{path}: the spec must be a mapping with sections {list(SPEC_SECTIONS)}, "
                       f"got {type(data).__name__}")
    unknown = sorted(map(str, set(data) - set(SPEC_SECTIONS)))
    if unknown:
        raise CLIError(f"{path}: unknown spec section(s) {unknown}; sections are {list(SPEC_SECTIONS)}")
    if "model" not in data:
        raise CLIError(f"{path}: the spec has no 'model' section")
    model = _section(data, "model", path)
    if "priors" in model and model["priors"] is not None and not isinstance(model["priors"], Mapping):
        raise CLIError(f"{path}: model.priors must be a mapping of parameter names to priors or values, "
                       f"got {type(model['priors']).__name__}")
    substrate = _section(data, "substrate", path)
    unknown = sorted(map(str, set(substrate) - set(SUBSTRATE_KEYS)))
    if unknown:
        raise CLIError(f"{path}: unknown key(s) {unknown} in the substrate section; "
                       f"keys are {list(SUBSTRATE_KEYS)}")
    allow_stay = substrate.get("allow_stay", True)
    if not isinstance(allow_stay, bool):
        raise CLIError(f"{path}: substrate.allow_stay must be true or false, got {allow_stay!r}")
    covariates = substrate.get("covariates") or []
    if isinstance(covariates, str) or not isinstance(covariates, list) or \
            not all(isinstance(c, str) for c in covariates):
        raise CLIError(f"{path}: substrate.covariates must be a list of node attribute names, "
                       f"got {covariates!r}")
    if len(set(covariates)) != len(covariates):
        raise CLIError(f"{path}: substrate.covariates lists an attribute twice: {covariates}")
    params = _section(data, "params", path)
    return {"model": model, "substrate": {"allow_stay": allow_stay, "covariates": list(covariates)},
            "params": params}


def _yaml_problem(exc) -> str:
    problem = getattr(exc, "problem", None)
    mark = getattr(exc, "problem_mark", None)
    if problem and mark is not None:
        return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
    return _text(exc)


def _section(data, name, path) -> dict:
    value = data.get(name)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise CLIError(f"{path}: the {name!r} section must be a mapping, got {type(value).__name__}")
    return dict(value)


def build_substrate(graph, spec: dict):
    """The :class:`~nvppl.substrate.Substrate` of a graph under a spec's ``substrate`` section.

    Parameters
    ----------
    graph : networkx graph
        From :func:`read_graph`.
    spec : dict
        From :func:`read_spec`.

    Returns
    -------
    Substrate

    Raises
    ------
    CLIError
        A graph that cannot be a substrate, or a missing or non-numeric
        covariate attribute (the message names the node and attribute).
    """
    from .substrate import Substrate

    sub = spec["substrate"]
    try:
        return Substrate.from_networkx(graph, allow_stay=sub["allow_stay"], covariates=sub["covariates"])
    except (ValueError, TypeError) as exc:
        raise CLIError(f"graph: {_text(exc)}") from None


def build_model(substrate, spec: dict, spec_path="spec"):
    """The :class:`~nvppl.model.VesicleModel` of a spec's ``model`` section.

    When the substrate section lists covariates and the model section does not
    give ``covariate_dim``, it is set to the number of covariates.

    Parameters
    ----------
    substrate : Substrate
    spec : dict
        From :func:`read_spec`.
    spec_path : str or Path
        Used in error messages.

    Returns
    -------
    VesicleModel

    Raises
    ------
    CLIError
        An invalid model section (unknown option, bad prior, ...) or a
        ``covariate_dim`` that contradicts ``substrate.covariates``.
    """
    from .model import VesicleModel

    options = dict(spec["model"])
    n_cov = len(spec["substrate"]["covariates"])
    if n_cov and "covariate_dim" not in options:
        options["covariate_dim"] = n_cov
    elif n_cov and options.get("covariate_dim") != n_cov:
        raise CLIError(f"{spec_path}: model.covariate_dim is {options.get('covariate_dim')!r} but "
                       f"substrate.covariates lists {n_cov} attribute(s) {spec['substrate']['covariates']}")
    try:
        return VesicleModel.from_spec(substrate, options)
    except (ValueError, TypeError) as exc:
        raise CLIError(f"{spec_path}: model: {_text(exc)}") from None


def spec_params(model, values: Mapping, base=None, spec_path="spec"):
    """Parameters from a spec's ``params`` section, validated against the model.

    Parameters
    ----------
    model : VesicleModel
    values : mapping
        Params field name -> number or nested list. A number is broadcast to the
        field's shape; a list must have the field's shape exactly.
    base : Params, optional
        Values of the fields not given (default: ``model.default_params()``).
    spec_path : str or Path
        Used in error messages.

    Returns
    -------
    Params
        Checked with :meth:`VesicleModel.check_params`.

    Raises
    ------
    CLIError
        An unknown field name (named in the message), a field the model does not
        use, a non-numeric or ragged value, a wrong shape or an invalid value.
    """
    import numpy as np

    from .params import PARAM_FIELDS

    unknown = sorted(map(str, set(values) - set(PARAM_FIELDS)))
    if unknown:
        raise CLIError(f"{spec_path}: unknown parameter name(s) {unknown} in the params section; "
                       f"names are {list(PARAM_FIELDS)}")
    changes = {}
    for name, value in values.items():
        shape = model.field_shape(name)
        if shape is None:
            raise CLIError(f"{spec_path}: params.{name}: not a parameter of a {model.lifetime!r} "
                           "lifetime model")
        arr = _numeric_array(value, f"{spec_path}: params.{name}")
        if arr.ndim == 0:
            arr = np.broadcast_to(arr, shape).copy()
        changes[name] = arr
    params = (base if base is not None else model.default_params()).replace(**changes)
    try:
        return model.check_params(params)
    except (ValueError, TypeError) as exc:
        raise CLIError(f"{spec_path}: params: {_text(exc)}") from None


def _numeric_array(value, where: str):
    import numpy as np

    def bad_leaf(x):
        if isinstance(x, list):
            return next((b for b in map(bad_leaf, x) if b is not None), None)
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            return x
        return None

    bad = bad_leaf(value)
    if bad is not None or isinstance(value, bool):
        raise CLIError(f"{where}: expected a number or a nested list of numbers, found {bad!r}")
    try:
        return np.asarray(value, dtype=np.float64)
    except ValueError:
        raise CLIError(f"{where}: the nested lists are ragged (rows of different lengths)") from None


def _text(exc) -> str:
    """The message of an exception on one line."""
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, KeyError) and len(exc.args) == 1:
        text = str(exc.args[0])
    return " ".join(text.split())


def _load_inputs(args):
    graph = read_graph(args.graph, undirected=args.undirected)
    spec = read_spec(args.spec)
    substrate = build_substrate(graph, spec)
    model = build_model(substrate, spec, args.spec)
    return spec, model


# ----------------------------------------------------------------- commands
def _cmd_simulate(args) -> int:
    import jax

    from . import errors
    from ._validate import as_jax_key
    from .simulate import simulate

    spec, model = _load_inputs(args)
    out = _output_file(args.output, "output")
    if model.covariate_dim and model.substrate.covariate_dim != model.covariate_dim:
        raise CLIError(f"{args.spec}: model.covariate_dim is {model.covariate_dim}: list that many numeric "
                       "node attributes under substrate.covariates (GraphML graph) to simulate")
    if args.from_prior:
        spec_params(model, spec["params"], spec_path=args.spec)  # checked, then not used
        if spec["params"]:
            print(f"nvppl: note: --from-prior: the spec's params section ({', '.join(spec['params'])}) "
                  "is not used", file=sys.stderr)
        params = model.sample_params(args.seed)
        key = jax.random.fold_in(as_jax_key(args.seed), 1)
    else:
        params = spec_params(model, spec["params"], spec_path=args.spec)
        key = args.seed
    if args.capacity is not None and args.backend != "numpyro":
        raise CLIError("--capacity applies to --backend numpyro only (the compiled backend has no capacity "
                       "limit)")
    try:
        traces = simulate(model, params, n_steps=args.steps, n_runs=args.runs, key=key,
                          capacity=args.capacity, backend=args.backend, n_threads=args.threads)
    except errors.CapacityError as exc:
        raise CLIError(f"{_text(exc).split('; nothing was truncated')[0]}; nothing was written: "
                       "rerun with a larger --capacity") from None
    traces.to_netcdf(out)
    print(f"wrote {out}: {traces.n_runs} run(s) x {traces.n_steps} steps on {model.n_nodes} nodes, "
          f"{traces.n_vesicles} vesicles, {len(traces)} vesicle-steps")
    return 0


def _cmd_fit(args) -> int:
    from . import infer
    from .traces import Traces

    spec, model = _load_inputs(args)
    spec_params(model, spec["params"], spec_path=args.spec)  # a spec is checked as a whole
    src = _input_file(args.traces, "traces")
    out = _output_file(args.output, "output")
    plots = _plot_dir(args.plots) if args.plots else None
    try:
        traces = Traces.from_netcdf(src, model.substrate)
    except ValueError as exc:  # TraceError is a ValueError
        raise CLIError(_prefixed(src, "invalid traces: ", _text(exc))) from None
    except OSError as exc:
        raise CLIError(f"{src}: cannot read the traces (not a NetCDF file?): {_text(exc)}") from None
    if traces.n_types != model.n_types:
        raise CLIError(f"{src} holds traces of {traces.n_types} vesicle type(s) but the model of "
                       f"{args.spec} has n_types={model.n_types}; set model.n_types to {traces.n_types}")
    try:
        fit = infer.fit(model, traces, method="nuts", num_samples=args.samples, num_warmup=args.warmup,
                        num_chains=args.chains, key=args.seed, progress_bar=not args.no_progress)
    except ValueError as exc:
        raise CLIError(f"cannot fit {src}: {_text(exc)}") from None
    except RuntimeError as exc:
        raise CLIError(f"the fit failed: {_text(exc)}") from None
    fit.to_netcdf(out)
    print(f"wrote {out}")
    _print_fit(fit)
    if plots is not None:
        _report_plots(write_plots(fit, plots, traces))
    return 0


def _cmd_summary(args) -> int:
    src = _input_file(args.fit, "fit")
    plots = _plot_dir(args.plots) if args.plots else None
    src, fit = _read_fit(src)
    print(f"fit: {src}")
    _print_fit(fit)
    if plots is not None:
        _report_plots(write_plots(fit, plots))
    return 0


def _cmd_deploy(args) -> int:
    from .backend import ChipConfig, DeploymentError, compile
    from .errors import CapacityError

    src, fit = _read_fit(args.fit)
    chip = _read_chip(args.chip) if args.chip is not None else ChipConfig()
    out = _output_dir(args.output, "image directory")
    draw = args.draws if args.draws is not None else args.draw
    try:
        result = compile(fit.model, fit, chip=chip, nodes_per_core=args.nodes_per_core, draw=draw)
    except DeploymentError as exc:
        raise CLIError(f"cannot deploy the model of {src} on the chip: {_text(exc)}; nothing was written") from None
    except CapacityError as exc:
        raise CLIError(f"the model of {src} does not fit the chip: {_text(exc)}; nothing was written") from None
    except IndexError as exc:  # a draw outside the posterior
        option = "--draws" if args.draws is not None else "--draw"
        raise CLIError(f"{option}: {_text(exc)}; nothing was written") from None
    except ValueError as exc:
        raise CLIError(f"cannot deploy {src}: {_text(exc)}; nothing was written") from None
    if args.draws is not None:
        images = [(out / f"draw_{d}", prog) for d, prog in zip(args.draws, result)]
    else:
        images = [(out, result)]
    for directory, prog in images:
        try:
            prog.write(directory)
        except OSError as exc:
            raise CLIError(f"cannot write the image {str(directory)!r}: {exc.strerror or _text(exc)}") from None
    for k, (directory, prog) in enumerate(images):
        if k:
            print()
        ves = prog.vesicles
        res = prog.resources
        print(f"wrote {directory}: {ves.source}; {res['graph_nodes']} graph nodes on {res['node_cores']} node "
              f"core(s) of a {chip.width} x {chip.height} chip")
        _print_resources(res)
        print(f"expected tile hops per migration step: {ves.expected_hops(prog.chip):.4g}")
        print("quantisation error per kernel:")
        print(prog.quantization_report.to_string(index=False))
    return 0


def _cmd_emulate(args) -> int:
    import yaml

    from .backend import Emulator, read_image
    from .errors import CapacityError

    src = _read_image_dir(args.image)
    out = _output_file(args.output, "output")
    try:
        prog = read_image(src)
    except yaml.YAMLError as exc:
        raise CLIError(f"{src / 'manifest.yaml'}: invalid YAML: {_yaml_problem(exc)}") from None
    except KeyError as exc:
        raise CLIError(f"{src / 'manifest.yaml'}: invalid chip image: no {_text(exc)!r} entry") from None
    except (ValueError, TypeError) as exc:  # ImageError is a ValueError
        raise CLIError(_prefixed(src, "invalid chip image: ", _text(exc))) from None
    except OSError as exc:
        raise CLIError(f"{src}: cannot read the chip image: {exc.strerror or _text(exc)}"
                       + (f" ({exc.filename})" if exc.filename else "")) from None
    if prog.vesicles is None:
        raise CLIError(f"{src}: the image deploys no vesicle model (it holds a spiking network only); "
                       "'nvppl emulate' runs the images of fitted models written by 'nvppl deploy'")
    if args.runs > 1 and prog.cores:
        raise CLIError(f"--runs {args.runs}: the image holds a base network of neurons on {len(prog.cores)} "
                       "core(s), which runs once per call; use --runs 1")
    try:
        run = Emulator(prog).run(args.ticks, key=args.seed, n_runs=args.runs)
        traces = run.traces
    except CapacityError as exc:
        raise CLIError(f"{_text(exc)}; nothing was written") from None
    except ValueError as exc:
        raise CLIError(f"cannot run {src}: {_text(exc)}; nothing was written") from None
    traces.to_netcdf(out)
    c = run.counters
    steps = int(c["vesicle_steps"])
    print(f"wrote {out}: {args.runs} run(s) x {args.ticks} ticks on {prog.vesicles.model.n_nodes} nodes, "
          f"{traces.n_vesicles} vesicles, {steps} vesicle-steps")
    print("traffic:")
    _print_rows([(name, int(c[name])) for name in
                 ("vesicle_packets", "vesicle_hops", "vesicle_docks", "spike_packets", "spike_hops")])
    print("energy (pJ):")
    per_step = f"{c['vesicle_energy_pj'] / steps:.4g}" if steps > 0 else "n/a (no vesicle-steps)"
    _print_rows([("energy_pj", f"{c['energy_pj']:.6g}"), ("vesicle_energy_pj", f"{c['vesicle_energy_pj']:.6g}"),
                 ("spike_energy_pj", f"{c['spike_energy_pj']:.6g}"), ("per vesicle-step", per_step)])
    _print_resources(prog.resources)
    return 0


def _read_fit(path):
    """``(path, Fit)`` of a fit file; errors as :class:`CLIError`."""
    from .infer import load_fit

    src = _input_file(path, "fit")
    try:
        return src, load_fit(src)
    except ValueError as exc:
        raise CLIError(_prefixed(src, "", _text(exc))) from None
    except OSError as exc:
        raise CLIError(f"{src}: cannot read the fit (not a NetCDF file?): {_text(exc)}") from None


def _read_chip(path):
    """The :class:`~nvppl.backend.ChipConfig` of a chip file; errors as :class:`CLIError`."""
    import yaml

    from .backend import ChipConfig

    src = _input_file(path, "chip")
    try:
        return ChipConfig.from_yaml(src)
    except yaml.YAMLError as exc:
        raise CLIError(f"{src}: invalid YAML: {_yaml_problem(exc)}") from None
    except UnicodeDecodeError as exc:
        raise CLIError(f"{src}: cannot read the chip file: {_text(exc)}") from None
    except (ValueError, TypeError) as exc:
        raise CLIError(_prefixed(src, "invalid chip file: ", _text(exc))) from None
    except OSError as exc:
        raise CLIError(f"{src}: cannot read the chip file: {exc.strerror or _text(exc)}") from None


def _read_image_dir(path) -> Path:
    p = Path(path)
    if not p.exists():
        raise CLIError(f"image directory {str(path)!r} does not exist")
    if not p.is_dir():
        raise CLIError(f"image {str(path)!r} is not a directory (give the directory 'nvppl deploy' wrote)")
    if not (p / "manifest.yaml").is_file():
        raise CLIError(f"{path}: not a chip image: the directory has no manifest.yaml "
                       "(write an image with 'nvppl deploy')")
    return p


def _output_dir(path, what: str) -> Path:
    """Check (before any computation) that directory ``path`` can be created or written; create nothing."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise CLIError(f"{what} {str(path)!r} exists and is not a directory")
    existing = p.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise CLIError(f"cannot create the {what} {str(path)!r}: {str(existing)!r} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise CLIError(f"{what} {str(path)!r} is not writable")
    return p


def _print_rows(rows) -> None:
    for name, value in rows:
        print(f"  {name:<26} {value}")


def _print_resources(res: Mapping) -> None:
    """The resources of a :class:`~nvppl.backend.ChipProgram`; per-core maxima against the core's size."""
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
    _print_rows(rows)


def _prefixed(path, what: str, message: str) -> str:
    """``what + message``, preceded by the file name unless the message names it."""
    return f"{what}{message}" if str(path) in message else f"{path}: {what}{message}"


def _print_fit(fit) -> None:
    post = fit.idata.posterior
    chains, draws = int(post.sizes["chain"]), int(post.sizes["draw"])
    line = f"method: {fit.method}  chains: {chains}  draws: {draws} per chain ({chains * draws} total)"
    if "sample_stats" in fit.idata.groups() and "diverging" in fit.idata.sample_stats:
        line += f"  divergences: {int(fit.idata.sample_stats['diverging'].values.sum())}"
    for attr, label in (("n_vesicles", "vesicles"), ("n_vesicle_steps", "vesicle-steps")):
        if attr in post.attrs:
            line += f"  {label}: {int(post.attrs[attr])}"
    print(line)
    print(f"inferred: {', '.join(n for n in fit.model.inferred if n in post) or '(none)'}")
    with _quiet_constant_warnings():
        table = fit.summary()
    print(table.to_string())


def write_plots(fit, directory, traces=None) -> list:
    """Write ``trace.png``, ``rank.png`` and ``ppc.png`` for a fit.

    Parameters
    ----------
    fit : Fit
    directory : str or Path
        Created if needed.
    traces : Traces, optional
        Observed traces for the posterior predictive check (default: the
        statistics stored in the fit).

    Returns
    -------
    list of (str, Path or str)
        Per plot file, ``(name, path)`` when written, or ``(name, reason)`` when
        it could not be drawn (a fit without posterior predictive draws has no
        ``ppc.png``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from . import diagnostics

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    done = []
    drawers = {"trace.png": lambda p: diagnostics.plot_trace(fit, path=p),
               "rank.png": lambda p: diagnostics.plot_rank(fit, path=p),
               "ppc.png": lambda p: diagnostics.ppc(fit, traces, path=p).figure}
    for name in PLOT_FILES:
        draw, path = drawers[name], directory / name
        try:
            with _quiet_constant_warnings():
                fig = draw(path)
        except ValueError as exc:
            if name != "ppc.png":
                raise
            done.append((name, _text(exc)))
            continue
        plt.close(fig)
        done.append((name, path))
    return done


@contextlib.contextmanager
def _quiet_constant_warnings():
    """Silence ArviZ's warnings about parameters that are constant in the
    posterior (the padded slots of ``T`` and the rows of nodes with a single
    candidate are always 0 or 1)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="invalid value encountered", category=RuntimeWarning,
                                module="arviz")
        warnings.filterwarnings("ignore", message="Your data appears to have a single value",
                                category=UserWarning)
        yield


def _report_plots(done) -> None:
    written = [str(p) for _, p in done if isinstance(p, Path)]
    if written:
        print(f"wrote plots: {', '.join(written)}")
    for name, p in done:
        if not isinstance(p, Path):
            print(f"nvppl: note: {name} not written: {p}", file=sys.stderr)


# --------------------------------------------------------------------- main
def main(argv=None) -> int:
    """Run the ``nvppl`` command line.

    Parameters
    ----------
    argv : list of str, optional
        Arguments without the program name (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status: 0 on success, 2 on an input error (reported on standard
        error as one line ``nvppl: error: ...``), 130 when interrupted.
        ``--help`` and ``--version`` print and raise ``SystemExit(0)`` as usual
        with :mod:`argparse`.
    """
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:
            where = f"nvppl {args.command}" if args.command else "nvppl"
            raise CLIError(f"unrecognized argument(s): {' '.join(extra)} (see '{where} --help')")
        if args.command is None:
            raise CLIError("a command is required: simulate, fit, summary, deploy or emulate "
                           "(see 'nvppl --help')")
        return int(args.func(args) or 0)
    except CLIError as exc:
        message = str(exc)
    except (ValueError, OSError) as exc:  # includes nvppl.TraceError
        message = _text(exc)
    except KeyboardInterrupt:
        print("nvppl: interrupted", file=sys.stderr)
        return 130
    print(f"nvppl: error: {' '.join(message.split())}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
