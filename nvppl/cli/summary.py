"""``nvppl summary``: the posterior summary of a saved fit; the summary and the
diagnostic plots that ``nvppl fit`` shares."""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

from ._common import command_parser, input_file, note, one_line, output_dir, write_folder
from ._inputs import read_fit

__all__ = ["add_parser", "run", "PLOT_FILES", "add_plots_argument", "plot_dir", "print_fit", "write_plots",
           "report_plots"]

#: Files written by ``--plots DIR``.
PLOT_FILES = ("trace.png", "rank.png", "ppc.png")


def add_parser(subparsers):
    """Add ``nvppl summary`` and its options to ``subparsers``; return its parser."""
    p = command_parser(
        subparsers, "summary", "print the posterior summary of a saved fit",
        (
            "Load FIT (written by 'nvppl fit' or Fit.to_netcdf) and print a short header (method, chains, "
            "draws, inferred fields) and the ArviZ summary table of the inferred parameters."
        ),
        run=run,
    )
    p.add_argument("fit", metavar="FIT", help="NetCDF fit written by 'nvppl fit'")
    add_plots_argument(p)
    return p


def run(args) -> int:
    """Run ``nvppl summary`` with parsed arguments; return the exit status."""
    src = input_file(args.fit, "fit")
    plots = plot_dir(args.plots)
    src, fit = read_fit(src)
    print(f"fit: {src}")
    print_fit(fit)
    if plots is not None:
        report_plots(write_plots(fit, plots))
    return 0


def add_plots_argument(parser) -> None:
    """Add ``--plots DIR`` to a command's parser."""
    parser.add_argument("--plots", metavar="DIR", default=None,
                        help="also write diagnostic plots trace.png, rank.png and ppc.png into DIR "
                             "(created if needed)")


def plot_dir(path):
    """The ``--plots`` folder, checked to be writable but not created (None without ``--plots``)."""
    return None if path is None else output_dir(path, "plot directory")


def print_fit(fit) -> None:
    """Print the header line, the inferred fields and the ArviZ summary table of a fit."""
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
    fit : nvppl.infer.Fit
    directory : str or Path
        Created when the plots are drawn: a new folder appears only with its
        plots in it. In an existing folder the plot files are replaced and other
        files kept.
    traces : nvppl.Traces, optional
        Observed traces for the posterior predictive check (default: the
        statistics stored in the fit).

    Returns
    -------
    list of (str, Path or str)
        Per plot file, ``(name, path)`` when written, or ``(name, reason)`` when
        it could not be drawn (a fit without posterior predictive draws has no
        ``ppc.png``).

    Raises
    ------
    CLIError
        When a plot file cannot be written.
    """
    directory = Path(directory)
    done = write_folder(directory, "plots", lambda folder: _draw_plots(fit, folder, traces))
    return [(name, directory / name if reason is None else reason) for name, reason in done]


def _draw_plots(fit, folder: Path, traces) -> list:
    """``(name, None)`` per plot written into ``folder``, ``(name, reason)`` per plot not drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .. import diagnostics

    drawers = {"trace.png": lambda p: diagnostics.plot_trace(fit, path=p),
               "rank.png": lambda p: diagnostics.plot_rank(fit, path=p),
               "ppc.png": lambda p: diagnostics.ppc(fit, traces, path=p).figure}
    done = []
    for name in PLOT_FILES:
        try:
            with _quiet_constant_warnings():
                fig = drawers[name](folder / name)
        except ValueError as exc:
            if name != "ppc.png":
                raise
            done.append((name, one_line(exc)))
            continue
        plt.close(fig)
        done.append((name, None))
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


def report_plots(done) -> None:
    """Print the plot files written and a note per plot not drawn."""
    written = [str(p) for _, p in done if isinstance(p, Path)]
    if written:
        print(f"wrote plots: {', '.join(written)}")
    for name, p in done:
        if not isinstance(p, Path):
            note(f"{name} not written: {p}")
