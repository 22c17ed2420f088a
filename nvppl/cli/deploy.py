"""``nvppl deploy``: compile a fit for the Darwin3-like chip and write its configuration image."""

from __future__ import annotations

from ..spec import yaml_problem
from ._common import CLIError, command_parser, input_file, int_arg, int_list, one_line, output_dir, \
    prefixed, print_resources, write_folder, write_output
from ._inputs import read_fit

__all__ = ["add_parser", "run", "read_chip"]

CHIP_HELP = """\
chip file (YAML): ChipConfig fields; fields not given keep their defaults
  width: 24                  # mesh size in tiles (default 24 x 24)
  height: 24
  mailbox_words: 1024        # vesicle slots of a node core
  synapse_words: 262144      # table memory of a core (48-bit words)
  seed: 0                    # seed of the on-chip random generators
  pj_per_hop: 3.5            # energy costs per event, in pJ
Write every field with nvppl.backend.ChipConfig().to_yaml('chip.yaml')."""


def add_parser(subparsers):
    """Add ``nvppl deploy`` and its options to ``subparsers``; return its parser."""
    p = command_parser(
        subparsers, "deploy", "compile a fit for the chip and write its configuration image",
        (
            "Load FIT (written by 'nvppl fit' or Fit.to_netcdf), quantise the fitted model for the "
            "Darwin3-like chip (nvppl.backend.compile), place its graph nodes on node cores and write the "
            "configuration image (manifest.yaml and one core_X_Y.txt per core) into IMAGE_DIR. Deploys the "
            "posterior mean unless --draw or --draws picks posterior draws. Prints the resources used, the "
            "quantisation error per kernel and the mean tile hops of a migration step. A model feature "
            "without a chip mapping, or a program too large for the chip, is an error and nothing is "
            "written."
        ),
        epilog=CHIP_HELP,
        run=run,
    )
    p.add_argument("fit", metavar="FIT", help="NetCDF fit written by 'nvppl fit'")
    p.add_argument("--chip", metavar="CHIP", default=None,
                   help="chip file (YAML with ChipConfig fields; default: ChipConfig())")
    p.add_argument("-o", "--output", required=True, metavar="IMAGE_DIR",
                   help="directory to write the image to (created if needed); with --draws, one "
                        "subdirectory draw_N per draw")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--draw", type=int_arg(0), default=None, metavar="N",
                       help="deploy posterior draw N, counted over chains x draws (default: the "
                            "posterior mean)")
    which.add_argument("--draws", type=int_list, default=None, metavar="N1,N2,...",
                       help="deploy several posterior draws, one image per draw in IMAGE_DIR/draw_N")
    p.add_argument("--nodes-per-core", type=int_arg(1), default=None, metavar="N",
                   help="graph nodes per node core (default: as many as leave each core's mailbox room "
                        "for 8x their expected vesicles)")
    return p


def run(args) -> int:
    """Run ``nvppl deploy`` with parsed arguments; return the exit status."""
    from ..backend import ChipConfig, DeploymentError, compile
    from ..errors import CapacityError

    src, fit = read_fit(args.fit)
    chip = read_chip(args.chip) if args.chip is not None else ChipConfig()
    out = output_dir(args.output, "image directory")
    draw = args.draws if args.draws is not None else args.draw
    try:
        result = compile(fit.model, fit, chip=chip, nodes_per_core=args.nodes_per_core, draw=draw)
    except DeploymentError as exc:
        raise CLIError(f"cannot deploy the model of {src} on the chip: {one_line(exc)}; nothing was written") \
            from None
    except CapacityError as exc:
        raise CLIError(f"the model of {src} does not fit the chip: {one_line(exc)}; nothing was written") \
            from None
    except IndexError as exc:  # a draw outside the posterior
        option = "--draws" if args.draws is not None else "--draw"
        raise CLIError(f"{option}: {one_line(exc)}; nothing was written") from None
    except ValueError as exc:
        raise CLIError(f"cannot deploy {src}: {one_line(exc)}; nothing was written") from None
    if args.draws is not None:
        images = [(out / f"draw_{d}", prog) for d, prog in zip(args.draws, result)]
        write_folder(out, "images", lambda folder: [prog.write(folder / d.name) for d, prog in images])
    else:
        images = [(out, result)]
        write_output(out, "image", result.write)
    for k, (directory, prog) in enumerate(images):
        if k:
            print()
        _report(directory, prog, chip)
    return 0


def _report(directory, prog, chip) -> None:
    ves = prog.vesicles
    res = prog.resources
    print(f"wrote {directory}: {ves.source}; {res['graph_nodes']} graph nodes on {res['node_cores']} node "
          f"core(s) of a {chip.width} x {chip.height} chip")
    print_resources(res)
    print(f"expected tile hops per migration step: {ves.expected_hops(prog.chip):.4g}")
    print("quantisation error per kernel:")
    print(prog.quantization_report.to_string(index=False))


def read_chip(path):
    """The :class:`~nvppl.backend.ChipConfig` of a chip file; errors as :class:`CLIError`."""
    import yaml

    from ..backend import ChipConfig

    src = input_file(path, "chip")
    try:
        return ChipConfig.from_yaml(src)
    except yaml.YAMLError as exc:
        raise CLIError(f"{src}: invalid YAML: {yaml_problem(exc)}") from None
    except UnicodeDecodeError as exc:
        raise CLIError(f"{src}: cannot read the chip file: {one_line(exc)}") from None
    except (ValueError, TypeError) as exc:
        raise CLIError(prefixed(src, "invalid chip file: ", one_line(exc))) from None
    except OSError as exc:
        raise CLIError(f"{src}: cannot read the chip file: {exc.strerror or one_line(exc)}") from None
