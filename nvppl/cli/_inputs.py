"""The inputs of the commands: graph files, spec files and the substrate, model,
parameters and fits made from them. Every problem is a :class:`CLIError` that
names the file and the offending entry."""

from __future__ import annotations

import re
from collections.abc import Mapping

from ..spec import SpecError, read_spec
from ._common import CLIError, input_file, one_line, prefixed

__all__ = [
    "add_input_arguments", "read_graph", "load_spec", "build_substrate", "build_model", "spec_params",
    "load_inputs", "read_fit",
]

_INT_LABEL = re.compile(r"[+-]?\d+")


def add_input_arguments(parser) -> None:
    """Add ``--graph``, ``--spec`` and ``--undirected`` to a command's parser."""
    parser.add_argument("--graph", required=True, metavar="GRAPH",
                        help="graph file: GraphML (.graphml) or an edge list (any other extension)")
    parser.add_argument("--spec", required=True, metavar="SPEC",
                        help="model spec file: YAML (.yaml/.yml) or JSON (.json) with sections "
                             "'model', optional 'substrate' and 'params'")
    parser.add_argument("--undirected", action="store_true",
                        help="take the graph as undirected: every edge can be crossed both ways "
                             "(default: an edge list is directed; GraphML follows its own declaration)")


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

    p = input_file(path, "graph")
    if p.suffix.lower() == ".graphml":
        try:
            G = nx.read_graphml(p)
        except Exception as exc:  # GraphML parse errors come in many types
            raise CLIError(f"{path}: cannot read the GraphML graph: {one_line(exc)}") from None
        if G.is_multigraph():
            G = nx.DiGraph(G) if G.is_directed() else nx.Graph(G)
        if undirected and G.is_directed():
            G = G.to_undirected()
    else:
        try:
            G = nx.read_edgelist(p, create_using=nx.Graph if undirected else nx.DiGraph, data=False)
        except (ValueError, TypeError, IndexError) as exc:
            raise CLIError(f"{path}: cannot read the edge list: {one_line(exc)}") from None
    if G.number_of_nodes() == 0:
        raise CLIError(f"{path}: the graph has no nodes (an edge list needs one 'u v' pair per line)")
    labels = list(G.nodes)
    if all(isinstance(x, str) and _INT_LABEL.fullmatch(x.strip()) for x in labels):
        mapping = {x: int(x) for x in labels}
        if len(set(mapping.values())) == len(mapping):
            G = nx.relabel_nodes(G, mapping, copy=True)
    return G


def load_spec(path) -> dict:
    """:func:`nvppl.spec.read_spec` of an existing file, its errors as :class:`CLIError`."""
    input_file(path, "spec")
    try:
        return read_spec(path)
    except SpecError as exc:
        raise CLIError(str(exc)) from None


def build_substrate(graph, spec: dict):
    """The :class:`~nvppl.Substrate` of a graph under a spec's ``substrate`` section.

    Parameters
    ----------
    graph : networkx graph
        From :func:`read_graph`.
    spec : dict
        From :func:`nvppl.spec.read_spec`.

    Returns
    -------
    Substrate

    Raises
    ------
    CLIError
        A graph that cannot be a substrate, or a missing or non-numeric
        covariate attribute (the message names the node and attribute).
    """
    from ..substrate import Substrate

    sub = spec["substrate"]
    try:
        return Substrate.from_networkx(graph, allow_stay=sub["allow_stay"], covariates=sub["covariates"])
    except (ValueError, TypeError) as exc:
        raise CLIError(f"graph: {one_line(exc)}") from None


def build_model(substrate, spec: dict, spec_path="spec"):
    """The :class:`~nvppl.VesicleModel` of a spec's ``model`` section.

    When the substrate section lists covariates and the model section does not
    give ``covariate_dim``, it is set to the number of covariates.

    Parameters
    ----------
    substrate : Substrate
    spec : dict
        From :func:`nvppl.spec.read_spec`.
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
    from ..model import VesicleModel

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
        raise CLIError(f"{spec_path}: model: {one_line(exc)}") from None


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
        Checked with :meth:`VesicleModel.check_params <nvppl.VesicleModel.check_params>`.

    Raises
    ------
    CLIError
        An unknown field name (named in the message), a field the model does not
        use, a non-numeric or ragged value, a wrong shape or an invalid value.
    """
    import numpy as np

    from ..params import PARAM_FIELDS

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
        raise CLIError(f"{spec_path}: params: {one_line(exc)}") from None


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


def load_inputs(args):
    """``(spec, model)`` of the ``--graph``, ``--spec`` and ``--undirected`` arguments."""
    graph = read_graph(args.graph, undirected=args.undirected)
    spec = load_spec(args.spec)
    substrate = build_substrate(graph, spec)
    model = build_model(substrate, spec, args.spec)
    return spec, model


def read_fit(path):
    """``(path, Fit)`` of a fit file; errors as :class:`CLIError`."""
    from ..infer import load_fit

    src = input_file(path, "fit")
    try:
        return src, load_fit(src)
    except ValueError as exc:
        raise CLIError(prefixed(src, "", one_line(exc))) from None
    except OSError as exc:
        raise CLIError(f"{src}: cannot read the fit (not a NetCDF file?): {one_line(exc)}") from None
