"""``nvppl simulate``: simulate vesicle traces from a spec and write them to NetCDF."""

from __future__ import annotations

from ._common import SPEC_HELP, CLIError, command_parser, int_arg, note, one_line, output_file, write_output
from ._inputs import add_input_arguments, load_inputs, spec_params

__all__ = ["add_parser", "run"]


def add_parser(subparsers):
    """Add ``nvppl simulate`` and its options to ``subparsers``; return its parser."""
    p = command_parser(
        subparsers, "simulate", "simulate vesicle traces from a model spec and write them to NetCDF",
        (
            "Build the substrate from GRAPH and the model from SPEC, simulate independent runs of the "
            "vesicle process and write the traces to NetCDF. Parameters come from the spec's 'params' "
            "section; fields it does not give keep the model's defaults (model.default_params())."
        ),
        epilog=SPEC_HELP,
        run=run,
    )
    add_input_arguments(p)
    p.add_argument("-o", "--output", required=True, metavar="TRACES",
                   help="NetCDF file to write the traces to (e.g. traces.nc)")
    p.add_argument("--steps", type=int_arg(1), default=200, metavar="N",
                   help="steps per run (default: 200)")
    p.add_argument("--runs", type=int_arg(1), default=4, metavar="N",
                   help="independent runs (default: 4)")
    p.add_argument("--seed", type=int_arg(0), default=0, metavar="N",
                   help="random seed (default: 0); the same seed gives the same traces")
    p.add_argument("--from-prior", action="store_true",
                   help="draw the parameters from the model's priors with "
                        "model.sample_params(SEED) instead of using the spec's 'params' section "
                        "(fixed values in the priors are kept); the simulation then uses a key "
                        "derived from SEED")
    p.add_argument("--backend", choices=("auto", "compiled", "numpyro"), default="auto",
                   help="simulator: the compiled core ('compiled', which 'auto' picks) or the NumPyro "
                        "program ('numpyro'); both draw from the same distribution")
    p.add_argument("--threads", type=int_arg(1), default=None, metavar="N",
                   help="threads of the compiled backend (default: every core); the traces do not "
                        "depend on it")
    p.add_argument("--capacity", type=int_arg(1), default=None, metavar="N",
                   help="vesicle slots per run of the NumPyro backend (default: chosen from the "
                        "parameters with a wide margin); raise it if the simulation reports an "
                        "overflow. The compiled backend has no such limit")
    return p


def run(args) -> int:
    """Run ``nvppl simulate`` with parsed arguments; return the exit status."""
    import jax

    from .._validate import as_jax_key
    from ..errors import CapacityError
    from ..simulate import simulate

    spec, model = load_inputs(args)
    out = output_file(args.output, "output")
    if model.covariate_dim and model.substrate.covariate_dim != model.covariate_dim:
        raise CLIError(f"{args.spec}: model.covariate_dim is {model.covariate_dim}: list that many numeric "
                       "node attributes under substrate.covariates (GraphML graph) to simulate")
    if args.from_prior:
        spec_params(model, spec["params"], spec_path=args.spec)  # checked, then not used
        if spec["params"]:
            note(f"--from-prior: the spec's params section ({', '.join(spec['params'])}) is not used")
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
    except CapacityError as exc:
        raise CLIError(f"{one_line(exc).split('; nothing was truncated')[0]}; nothing was written: "
                       "rerun with a larger --capacity") from None
    write_output(out, "traces", traces.to_netcdf)
    print(f"wrote {out}: {traces.n_runs} run(s) x {traces.n_steps} steps on {model.n_nodes} nodes, "
          f"{traces.n_vesicles} vesicles, {len(traces)} vesicle-steps")
    return 0
