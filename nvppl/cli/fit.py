"""``nvppl fit``: fit a model to traces with NUTS and write the fit to NetCDF."""

from __future__ import annotations

from ._common import SPEC_HELP, CLIError, command_parser, input_file, int_arg, one_line, output_file, \
    prefixed, write_output
from ._inputs import add_input_arguments, load_inputs, spec_params
from .summary import add_plots_argument, plot_dir, print_fit, report_plots, write_plots

__all__ = ["add_parser", "run"]


def add_parser(subparsers):
    """Add ``nvppl fit`` and its options to ``subparsers``; return its parser."""
    p = command_parser(
        subparsers, "fit", "fit a model to traces with NUTS and write the fit to NetCDF",
        (
            "Load TRACES (validated against the substrate built from GRAPH), fit the model of SPEC with NUTS "
            "on the exact trace likelihood, write the fit (an ArviZ InferenceData with the model "
            "specification) to NetCDF and print the posterior summary. The spec's 'params' section is "
            "checked but not used."
        ),
        epilog=SPEC_HELP,
        run=run,
    )
    p.add_argument("traces", metavar="TRACES", help="NetCDF traces written by 'nvppl simulate' "
                   "(or Traces.to_netcdf)")
    add_input_arguments(p)
    p.add_argument("-o", "--output", required=True, metavar="FIT",
                   help="NetCDF file to write the fit to (e.g. fit.nc); read it with "
                        "'nvppl summary' or nvppl.load_fit")
    p.add_argument("--samples", type=int_arg(1), default=1000, metavar="N",
                   help="posterior draws kept per chain (default: 1000)")
    p.add_argument("--warmup", type=int_arg(0), default=1000, metavar="N",
                   help="warm-up iterations per chain (default: 1000)")
    p.add_argument("--chains", type=int_arg(1), default=4, metavar="N",
                   help="MCMC chains (default: 4)")
    p.add_argument("--seed", type=int_arg(0), default=0, metavar="N",
                   help="random seed of the sampler (default: 0)")
    p.add_argument("--no-progress", action="store_true",
                   help="do not show the sampler's progress bar")
    add_plots_argument(p)
    return p


def run(args) -> int:
    """Run ``nvppl fit`` with parsed arguments; return the exit status.

    The output file and the plot folder are checked first and written last:
    a fit that fails or is interrupted creates neither of them.
    """
    from .. import infer
    from ..traces import Traces

    spec, model = load_inputs(args)
    spec_params(model, spec["params"], spec_path=args.spec)  # a spec is checked as a whole
    src = input_file(args.traces, "traces")
    out = output_file(args.output, "output")
    plots = plot_dir(args.plots)
    try:
        traces = Traces.from_netcdf(src, model.substrate)
    except ValueError as exc:  # TraceError is a ValueError
        raise CLIError(prefixed(src, "invalid traces: ", one_line(exc))) from None
    except OSError as exc:
        raise CLIError(f"{src}: cannot read the traces (not a NetCDF file?): {one_line(exc)}") from None
    if traces.n_types != model.n_types:
        raise CLIError(f"{src} holds traces of {traces.n_types} vesicle type(s) but the model of "
                       f"{args.spec} has n_types={model.n_types}; set model.n_types to {traces.n_types}")
    try:
        fit = infer.fit(model, traces, method="nuts", num_samples=args.samples, num_warmup=args.warmup,
                        num_chains=args.chains, key=args.seed, progress_bar=not args.no_progress)
    except ValueError as exc:
        raise CLIError(f"cannot fit {src}: {one_line(exc)}") from None
    except RuntimeError as exc:
        raise CLIError(f"the fit failed: {one_line(exc)}") from None
    write_output(out, "fit", fit.to_netcdf)
    print(f"wrote {out}")
    print_fit(fit)
    if plots is not None:
        report_plots(write_plots(fit, plots, traces))
    return 0
