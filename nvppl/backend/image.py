"""Compiled chip programs and their plain-text configuration image.

A :class:`ChipProgram` is what :func:`nvppl.backend.compile` produces and
:class:`nvppl.backend.Emulator` runs: the memory contents of every used core
(:class:`~nvppl.backend.program.CoreImage`, and the node cores of a deployed
vesicle model) plus the names needed to read results back. It is written as a
folder holding ``manifest.yaml`` and one ``core_X_Y.txt`` per core. Each core
file has one line per memory write::

    # tick op x y address value
    0 W 1 0 0x00000000 0x000000000003

``address`` is ``region · 2²⁴ + offset`` (regions:
:data:`~nvppl.backend.program.REGIONS`), ``value`` the word in hexadecimal
(two's complement at the word's width). Zero state and trace words are not
written; the sizes live in the config registers, so reading the image back
reproduces the program exactly. The word layouts are those of
:mod:`nvppl.backend.program`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from .._files import atomic_dir, write_text
from ..model import VesicleModel
from ..params import Params
from .chip import ChipConfig
from .program import (
    CONFIG_REGISTERS,
    NODE_CONFIG,
    REGIONS,
    CoreImage,
    NodeCoreImage,
    VesicleProgram,
    signed,
)

__all__ = ["FORMAT", "ChipProgram", "ImageError", "core_lines", "node_core_lines", "read_image", "write_image"]

#: The ``format`` entry of an image's manifest.
FORMAT = "nvppl-chip-image/1"


@dataclass(eq=False)
class ChipProgram:
    """A compiled program for the chip (made by :func:`nvppl.backend.compile`).

    Attributes
    ----------
    chip : ChipConfig
    cores : list of CoreImage
        Used cores, in placement order.
    populations : list of dict
        ``name``, ``kind``, ``size`` and ``cores`` (core indices into ``cores``)
        of every population, in network order.
    projections : list of dict
        ``pre``, ``post``, ``kind``, ``plastic`` of every projection.
    quantization : pandas.DataFrame
        One row per quantised quantity: what, float value, deployed value, error.
    network : Network or None
        The source network (None for a program read from an image).
    vesicles : VesicleProgram or None
        The deployed vesicle model: node cores, tables, the Params asked for and
        those deployed (``quantized_params``), the quantisation report.
    """

    chip: ChipConfig
    cores: list
    populations: list
    projections: list
    quantization: object = None
    network: object = None
    extra: dict = field(default_factory=dict)
    vesicles: object = None

    @property
    def quantized_params(self):
        """The :class:`~nvppl.Params` actually deployed (the vesicle model's, after quantisation)."""
        if self.vesicles is None:
            raise AttributeError("the program deploys no vesicle model (compile(model, params_or_fit, ...))")
        return self.vesicles.quantized_params

    @property
    def quantization_report(self):
        """Per kernel, the worst-case and typical error of the deployed probabilities (a DataFrame)."""
        if self.vesicles is None:
            raise AttributeError("the program deploys no vesicle model; see .quantization for a network")
        return self.vesicles.report

    @property
    def resources(self) -> dict:
        """Resources used: cores, neurons, synapse words, axon words, instructions.

        Each value is the total over used cores; ``*_max_per_core`` gives the
        fullest core against the chip's per-core size.
        """
        chip = self.chip
        out = {
            "cores": len(self.cores), "cores_available": chip.n_neuron_cores,
            "neurons": sum(c.n_neurons for c in self.cores),
            "synapse_words": sum(len(c.synapses) for c in self.cores),
            "axon_words": sum(len(c.axon_out) + len(c.axon_in) for c in self.cores),
            "instruction_words": sum(len(c.program) for c in self.cores),
        }
        if self.cores:
            out["neurons_max_per_core"] = (max(c.n_neurons for c in self.cores), chip.neurons_per_core)
            out["synapse_words_max_per_core"] = (max(len(c.synapses) for c in self.cores), chip.synapse_words)
            out["axon_words_max_per_core"] = (max(len(c.axon_out) + len(c.axon_in) for c in self.cores),
                                              chip.axon_words)
        ves = self.vesicles
        if ves is not None:
            words = [c.table_words for c in ves.cores]
            out.update({
                "node_cores": len(ves.cores), "graph_nodes": ves.model.n_nodes,
                "mailbox_words": len(ves.cores) * chip.mailbox_words,
                "table_words": int(sum(words)), "release_ports": len(ves.ports),
                "nodes_max_per_core": max(c.config["n_nodes"] for c in ves.cores),
                "table_words_max_per_core": (max(words), chip.synapse_words),
            })
            out["cores"] += len(ves.cores)
        return out

    def population_index(self, name: str) -> int:
        for k, p in enumerate(self.populations):
            if p["name"] == name:
                return k
        raise KeyError(f"no population named {name!r}; the program has {[p['name'] for p in self.populations]}")

    def equals(self, other: ChipProgram) -> bool:
        """True when both programs configure the chip identically."""
        return (
            self.chip == other.chip and len(self.cores) == len(other.cores)
            and all(a.equals(b) for a, b in zip(self.cores, other.cores))
            and self.populations == other.populations and self.projections == other.projections
            and (self.vesicles is None) == (other.vesicles is None)
            and (self.vesicles is None or self.vesicles.equals(other.vesicles))
        )

    def write(self, directory) -> None:
        """Write the configuration image to folder ``directory``.

        The folder is assembled beside ``directory`` and put in its place only
        when complete, so a failed write leaves a previous image there as it
        was. An existing folder is replaced only when it holds nothing but an
        image (``manifest.yaml`` and ``core_X_Y.txt`` files).

        Examples
        --------
        >>> import numpy as np, tempfile
        >>> from nvppl.backend import Network, LIF, compile, read_image
        >>> net = Network(); a = net.add_input("a", 2); b = net.add_lif("b", 2, LIF(tau_mem=4.0))
        >>> _ = net.connect(a, b, np.eye(2))
        >>> prog = compile(net)
        >>> d = tempfile.mkdtemp()
        >>> prog.write(d)
        >>> read_image(d).equals(prog)
        True
        """
        write_image(self, directory)


def _hex(value: int, width: int) -> str:
    return f"0x{value & ((1 << width) - 1):0{width // 4}x}"


def _line(x: int, y: int, region: str, offset: int, value, width: int = 48) -> str:
    """The image line of one configuration write."""
    return f"0 W {x} {y} {_hex((REGIONS[region] << 24) | offset, 32)} {_hex(int(value), width)}"


def _region_lines(x: int, y: int, region: str, words, width: int = 48) -> list[str]:
    """The image lines of the words of a region, from offset 0."""
    return [_line(x, y, region, k, word, width) for k, word in enumerate(words)]


def core_lines(core: CoreImage) -> list[str]:
    """The image lines of one neuron core."""
    x, y = core.x, core.y
    lines = [f"# core ({x}, {y}); tick op x y address value"]
    lines += _region_lines(x, y, "config", [core.config[name] for name in CONFIG_REGISTERS])
    lines += _region_lines(x, y, "instruction", core.program, 32)
    for region, memory in (("state", core.state), ("trace", core.traces)):
        slots = memory.shape[1]
        lines += [_line(x, y, region, int(i) * slots + int(s), memory[i, s], 16) for i, s in zip(*np.nonzero(memory))]
    for region, words in (("axon_out", core.axon_out), ("axon_in", core.axon_in), ("synapse", core.synapses)):
        lines += _region_lines(x, y, region, words)
    return lines


def node_core_lines(core: NodeCoreImage) -> list[str]:
    """The image lines of one node core."""
    x, y = core.x, core.y
    lines = [f"# node core ({x}, {y}); tick op x y address value"]
    lines += _region_lines(x, y, "config", [core.config[name] for name in NODE_CONFIG])
    for region, words in (("vesicle_types", core.types), ("vesicle_emission", core.emission),
                          ("vesicle_nodes", core.nodes), ("vesicle_migration", core.migration),
                          ("vesicle_rate", core.rate), ("vesicle_sources", core.sources)):
        lines += _region_lines(x, y, region, words)
    return lines


def _params_to_plain(params) -> dict:
    """Each field as {shape, values (flat)}: floats print in full precision, so reading back is exact."""
    return {k: {"shape": list(np.shape(v)), "values": np.asarray(v, dtype=float).reshape(-1).tolist()}
            for k, v in params.to_numpy().to_dict().items()}


def _plain(obj):
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    return obj


def _manifest(prog: ChipProgram) -> dict:
    manifest = {
        "format": FORMAT,
        "chip": prog.chip.to_dict(),
        "cores": [[c.x, c.y] for c in prog.cores],
        "populations": prog.populations,
        "projections": prog.projections,
        "vesicles": None,
    }
    ves = prog.vesicles
    if ves is not None:
        manifest["vesicles"] = {
            "model": ves.model.to_json(), "source": ves.source,
            "params": _params_to_plain(ves.params), "quantized_params": _params_to_plain(ves.quantized_params),
            "node_cores": [[c.x, c.y] for c in ves.cores], "ports": ves.ports.tolist(),
        }
    return _plain(manifest)


def _is_image_file(name: str) -> bool:
    return name == "manifest.yaml" or (name.startswith("core_") and name.endswith(".txt"))


def write_image(prog: ChipProgram, directory) -> None:
    """Write ``prog`` as ``manifest.yaml`` plus one ``core_X_Y.txt`` per core (see :meth:`ChipProgram.write`).

    Raises
    ------
    FileExistsError
        When ``directory`` holds files that are not part of an image (they
        would be lost); nothing is written.
    OSError
        When a write fails; a previous image in ``directory`` is then unchanged.
    """
    target = Path(directory)
    if target.is_dir():
        other = sorted(p.name for p in target.iterdir() if not _is_image_file(p.name))
        if other:
            raise FileExistsError(f"{target} holds files that are not part of a chip image ({other[0]!r}"
                                  f"{', ...' if len(other) > 1 else ''}); write the image to a new or empty folder "
                                  "or over an image")
    files = {"manifest.yaml": yaml.safe_dump(_manifest(prog), sort_keys=False)}
    for core in prog.cores:
        files[f"core_{core.x}_{core.y}.txt"] = "\n".join(core_lines(core)) + "\n"
    for core in (prog.vesicles.cores if prog.vesicles is not None else ()):
        files[f"core_{core.x}_{core.y}.txt"] = "\n".join(node_core_lines(core)) + "\n"
    with atomic_dir(target) as folder:
        for name, text in files.items():
            write_text(folder / name, text)


class ImageError(ValueError):
    """A configuration image that cannot be read; names the file and line."""


def _read_words(path, x, y) -> dict:
    """{region: {offset: value}} of the writes in one core file."""
    regs: dict[int, dict[int, int]] = {r: {} for r in REGIONS.values()}
    with open(path) as fh:
        for lineno, line in enumerate(fh, 1):
            text = line.split("#", 1)[0].strip()
            if not text:
                continue
            parts = text.split()
            where = f"{path}, line {lineno}"
            if len(parts) != 6:
                raise ImageError(f"{where}: expected 'tick op x y address value', got {line.strip()!r}")
            try:
                tick, op, cx, cy = int(parts[0]), parts[1], int(parts[2]), int(parts[3])
                address, value = int(parts[4], 0), int(parts[5], 0)
            except ValueError as exc:
                raise ImageError(f"{where}: cannot parse {line.strip()!r}") from exc
            if tick != 0 or op != "W":
                raise ImageError(f"{where}: only configuration writes at tick 0 ('0 W ...') belong in an image")
            if (cx, cy) != (x, y):
                raise ImageError(f"{where}: write to core ({cx}, {cy}) in the file of core ({x}, {y})")
            region, offset = address >> 24, address & 0xFFFFFF
            if region not in regs:
                raise ImageError(f"{where}: unknown memory region {region} in address {parts[4]}")
            if offset in regs[region]:
                raise ImageError(f"{where}: address {parts[4]} written twice")
            regs[region][offset] = value
    return regs


def _config(regs, path, names, optional=()) -> dict:
    """The config registers ``names``; those in ``optional`` read 0 when the image does not set them."""
    cfg_raw = dict(regs[REGIONS["config"]])
    for k, name in enumerate(names):
        if name in optional:
            cfg_raw.setdefault(k, 0)
    missing = [name for k, name in enumerate(names) if k not in cfg_raw]
    if missing:
        raise ImageError(f"{path}: config registers {missing} are not set")
    extra = [k for k in cfg_raw if k >= len(names)]
    if extra:
        raise ImageError(f"{path}: config register {min(extra)} does not exist on this kind of core")
    return {name: cfg_raw[k] for k, name in enumerate(names)}


def _dense(regs, path, region, count, what):
    words = regs[REGIONS[region]]
    bad = [k for k in words if k >= count]
    if bad:
        raise ImageError(f"{path}: {what} word {min(bad)} is beyond the {count} the config registers give")
    out = np.zeros(count, dtype=np.uint64)
    for k, v in words.items():
        out[k] = v
    return out


def _unexpected(regs, path, allowed):
    for name, code in REGIONS.items():
        if name not in allowed and regs[code]:
            raise ImageError(f"{path}: writes to the {name} region, which this kind of core does not use")


def _parse_core(path, x, y) -> CoreImage:
    regs = _read_words(path, x, y)
    _unexpected(regs, path, ("config", "instruction", "state", "trace", "axon_out", "axon_in", "synapse"))
    config = _config(regs, path, CONFIG_REGISTERS)
    n, slots = config["n_neurons"], config["state_slots"]

    def dense(region, count, what):
        return _dense(regs, path, region, count, what)

    program = dense("instruction", config["program_words"], "instruction").astype(np.uint32)
    state = signed(dense("state", n * slots, "state"), 16)
    traces = dense("trace", n * 3, "trace").astype(np.int64)
    return CoreImage(
        x, y, config, program, state.reshape(n, slots), traces.reshape(n, 3),
        dense("axon_out", config["axon_out_words"], "axon-out"),
        dense("axon_in", config["axon_in_words"], "axon-in"),
        dense("synapse", config["synapse_words"], "synapse"),
    )


def read_image(directory) -> ChipProgram:
    """Read a configuration image written by :meth:`ChipProgram.write`.

    Raises
    ------
    ImageError
        Naming the file and line of anything malformed.
    """
    path = os.path.join(directory, "manifest.yaml")
    with open(path) as fh:
        try:
            manifest = yaml.safe_load(fh)
        except yaml.YAMLError as exc:
            raise ImageError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ImageError(f"{path}: not an nvppl chip image manifest")
    missing = [k for k in ("chip", "cores", "populations", "projections") if k not in manifest]
    if missing:
        raise ImageError(f"{path}: the manifest has no {', '.join(repr(k) for k in missing)}")
    try:
        chip = ChipConfig.from_dict(manifest["chip"])
    except (TypeError, ValueError) as exc:
        raise ImageError(f"{path}: invalid chip: {exc}") from None
    cores = [_parse_core(os.path.join(directory, f"core_{x}_{y}.txt"), x, y) for x, y in manifest["cores"]]
    vesicles = None
    if manifest.get("vesicles") is not None:
        vesicles = _read_vesicles(directory, manifest["vesicles"], path)
    return ChipProgram(chip, cores, manifest["populations"], manifest["projections"], vesicles=vesicles)


def _parse_node_core(path, x, y):
    regs = _read_words(path, x, y)
    _unexpected(regs, path, ("config", "vesicle_types", "vesicle_emission", "vesicle_nodes", "vesicle_migration",
                             "vesicle_rate", "vesicle_sources"))
    cfg = _config(regs, path, NODE_CONFIG, optional=NODE_CONFIG[5:])
    K, L = cfg["n_types"], cfg["table_len"]
    return NodeCoreImage(x, y, cfg, _dense(regs, path, "vesicle_types", K, "type"),
                         _dense(regs, path, "vesicle_emission", 0 if cfg["rate_window"] else K * L, "emission"),
                         _dense(regs, path, "vesicle_nodes", cfg["nodes_words"], "node"),
                         _dense(regs, path, "vesicle_migration", cfg["migration_words"], "migration"),
                         _dense(regs, path, "vesicle_rate", cfg["rate_words"], "rate emission"),
                         _dense(regs, path, "vesicle_sources", cfg["source_words"], "rate source"))


def _params_from_plain(d) -> Params:
    return Params(**{k: np.asarray(v["values"], dtype=float).reshape(v["shape"]) for k, v in d.items()})


def _read_vesicles(directory, v, path):
    try:
        model = VesicleModel.from_json(v["model"])
        params = _params_from_plain(v["params"])
        quantized = _params_from_plain(v["quantized_params"])
        ports = np.asarray(v["ports"], dtype=np.int64).reshape(-1, 2)
        tiles = [tuple(t) for t in v["node_cores"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise ImageError(f"{path}: the 'vesicles' section is malformed: {exc}") from None
    cores = [_parse_node_core(os.path.join(directory, f"core_{x}_{y}.txt"), x, y) for x, y in tiles]
    ves = VesicleProgram(model, params, quantized, None, cores, ports, v.get("source", "image"))
    try:
        ves.tables()
    except ValueError as exc:
        raise ImageError(f"{directory}: the node cores do not hold a valid deployment: {exc}") from None
    return ves
