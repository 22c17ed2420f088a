"""``nvppl emulate``: run a chip image on the event-driven emulator and write the vesicle traces."""

from __future__ import annotations

from pathlib import Path

from ..spec import yaml_problem
from ._common import CLIError, command_parser, int_arg, one_line, output_file, prefixed, print_resources, \
    print_rows, write_output

__all__ = ["add_parser", "run"]


def add_parser(subparsers):
    """Add ``nvppl emulate`` and its options to ``subparsers``; return its parser."""
    p = command_parser(
        subparsers, "emulate", "run a chip image on the emulator and write the vesicle traces to NetCDF",
        (
            "Read the configuration image in IMAGE_DIR (written by 'nvppl deploy' or ChipProgram.write), run "
            "it for N ticks on the event-driven emulator (nvppl.backend.Emulator), write the vesicle traces "
            "to NetCDF and print the vesicle and spike traffic, the energy estimate and the resources of the "
            "program. The image must deploy a vesicle model. Read the traces with Traces.from_netcdf(path, "
            "substrate) on the model's substrate."
        ),
        run=run,
    )
    p.add_argument("image", metavar="IMAGE_DIR", help="image directory written by 'nvppl deploy'")
    p.add_argument("--ticks", type=int_arg(1), required=True, metavar="N",
                   help="ticks per run (one tick is one step of the vesicle process)")
    p.add_argument("-o", "--output", required=True, metavar="TRACES",
                   help="NetCDF file to write the vesicle traces to (e.g. chip_traces.nc)")
    p.add_argument("--runs", type=int_arg(1), default=1, metavar="N",
                   help="independent runs (default: 1); more than one only for an image without a "
                        "base network of neurons")
    p.add_argument("--seed", type=int_arg(0), default=None, metavar="N",
                   help="seed of the on-chip random generators (default: the chip's seed in the "
                        "image); the same seed gives the same run")
    return p


def run(args) -> int:
    """Run ``nvppl emulate`` with parsed arguments; return the exit status."""
    from ..backend import Emulator
    from ..errors import CapacityError

    src = _image_dir(args.image)
    out = output_file(args.output, "output")
    prog = _read_image(src)
    if prog.vesicles is None:
        raise CLIError(f"{src}: the image deploys no vesicle model (it holds a spiking network only); "
                       "'nvppl emulate' runs the images of fitted models written by 'nvppl deploy'")
    if args.runs > 1 and prog.cores:
        raise CLIError(f"--runs {args.runs}: the image holds a base network of neurons on {len(prog.cores)} "
                       "core(s), which runs once per call; use --runs 1")
    try:
        result = Emulator(prog).run(args.ticks, key=args.seed, n_runs=args.runs)
        traces = result.traces
    except CapacityError as exc:
        raise CLIError(f"{one_line(exc)}; nothing was written") from None
    except ValueError as exc:
        raise CLIError(f"cannot run {src}: {one_line(exc)}; nothing was written") from None
    write_output(out, "traces", traces.to_netcdf)
    c = result.counters
    steps = int(c["vesicle_steps"])
    print(f"wrote {out}: {args.runs} run(s) x {args.ticks} ticks on {prog.vesicles.model.n_nodes} nodes, "
          f"{traces.n_vesicles} vesicles, {steps} vesicle-steps")
    print("traffic:")
    print_rows([(name, int(c[name])) for name in
                ("vesicle_packets", "vesicle_hops", "vesicle_docks", "spike_packets", "spike_hops")])
    print("energy (pJ):")
    per_step = f"{c['vesicle_energy_pj'] / steps:.4g}" if steps > 0 else "n/a (no vesicle-steps)"
    print_rows([("energy_pj", f"{c['energy_pj']:.6g}"), ("vesicle_energy_pj", f"{c['vesicle_energy_pj']:.6g}"),
                ("spike_energy_pj", f"{c['spike_energy_pj']:.6g}"), ("per vesicle-step", per_step)])
    print_resources(prog.resources)
    return 0


def _image_dir(path) -> Path:
    p = Path(path)
    if not p.exists():
        raise CLIError(f"image directory {str(path)!r} does not exist")
    if not p.is_dir():
        raise CLIError(f"image {str(path)!r} is not a directory (give the directory 'nvppl deploy' wrote)")
    if not (p / "manifest.yaml").is_file():
        raise CLIError(f"{path}: not a chip image: the directory has no manifest.yaml "
                       "(write an image with 'nvppl deploy')")
    return p


def _read_image(src: Path):
    """The :class:`~nvppl.backend.ChipProgram` of an image folder; errors as :class:`CLIError`."""
    import yaml

    from ..backend import read_image

    try:
        return read_image(src)
    except yaml.YAMLError as exc:
        raise CLIError(f"{src / 'manifest.yaml'}: invalid YAML: {yaml_problem(exc)}") from None
    except KeyError as exc:
        raise CLIError(f"{src / 'manifest.yaml'}: invalid chip image: no {one_line(exc)!r} entry") from None
    except (ValueError, TypeError) as exc:  # ImageError is a ValueError
        raise CLIError(prefixed(src, "invalid chip image: ", one_line(exc))) from None
    except OSError as exc:
        raise CLIError(f"{src}: cannot read the chip image: {exc.strerror or one_line(exc)}"
                       + (f" ({exc.filename})" if exc.filename else "")) from None
