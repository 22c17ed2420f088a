"""The chip: mesh size, per-core memories, number formats and energy costs.

A :class:`ChipConfig` describes one Darwin3-like chip (see the guide page *The
Darwin3-like event emulator*, section *The chip*): a ``width`` x ``height`` mesh
of tiles, one of which is the controller and the rest neuron cores, the sizes
of each core's memories, the widths of its fixed-point numbers, its rounding
mode and random generator, and the per-event energy costs used by the
emulator's energy estimate.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, fields
from pathlib import Path

import yaml

from .._files import write_text
from .._validate import integer
from .isa.opcodes import ROUNDINGS

__all__ = ["RANDOM_MODES", "ROUNDING_MODES", "ChipConfig"]

#: Rounding modes of ``shr`` (see *Rounding* in the guide), in the order of their codes.
ROUNDING_MODES = ROUNDINGS

#: Random generators a core can run: only the counter-based one of the guide.
RANDOM_MODES = ("counter",)

_MAX_MESH_SIDE = 32  # source coordinates are 5-bit fields of the head flit
_MAX_NEURONS_PER_CORE = 4096  # a synapse word holds a 12-bit neuron index
_MAX_AXON_WORDS = 2**24  # a spike packet addresses its axon with 24 bits
_MAX_SYNAPSE_WORDS = 2**20  # the first-synapse field of an axon header has 20 bits


def _integer(name, value, lo, hi=None):
    """Return ``value`` as an ``int`` after checking ``lo <= value <= hi``."""
    value = integer(value, name, None, error=TypeError)
    if value < lo or (hi is not None and value > hi):
        bounds = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise ValueError(f"{name} = {value} is out of range: must be {bounds}")
    return value


def _energy(name, value):
    """Return ``value`` as a ``float`` after checking it is finite and >= 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number of picojoules, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} = {value} must be finite and >= 0 (picojoules)")
    return value


@dataclass(frozen=True, kw_only=True)
class ChipConfig:
    """A Darwin3-like chip: mesh, core memories, number formats and costs.

    All fields are keyword-only and checked on construction; an invalid value
    raises :class:`ValueError` naming the field and the value (a value of the
    wrong type, such as a string for ``width``, raises :class:`TypeError`).

    Parameters
    ----------
    width, height : int
        Mesh size in tiles, 1..32 each (source coordinates are 5-bit fields of
        a packet's head flit). The mesh must hold at least one neuron core
        besides the controller.
    controller : tuple of int
        ``(x, y)`` of the controller tile, which injects external input and
        holds no neurons. Any pair of integers is stored as a tuple.
    neurons_per_core : int
        At most 4096, since a synapse word holds a 12-bit neuron index.
    instruction_words : int
        Size of a core's instruction memory (32-bit words).
    state_slots : int
        Signed state words per neuron.
    axon_words : int
        Size of a core's axon table, at most 2**24 (the axon field of a spike
        packet has 24 bits).
    synapse_words : int
        Size of a core's synapse memory (48-bit words), at most 2**20 (the
        first-synapse field of an axon header has 20 bits; this also keeps the
        random-generator units of synapses, 2**30 + index, apart from neurons').
    mailbox_words : int
        Size of a core's vesicle mailbox (48-bit words).
    state_bits : int
        Width of signed state words and registers, 2..16.
    trace_bits : int
        Width of unsigned traces, 1..15.
    weight_bits : int
        Width of signed synapse weights, 2..16.
    rounding : {"floor", "nearest", "stochastic"}
        Rounding mode of ``shr``.
    random_mode : {"counter"}
        The random generator; only the counter-based generator of the guide is
        supported, because it alone makes results independent of which neurons
        the event-driven emulator skips and of threads.
    seed : int
        Seed of the random generator, ``0 <= seed < 2**63``.
    learning_interval : int
        Ticks between learning steps, >= 1.
    pj_per_synop : float
        Energy of one synaptic operation: 5.47 pJ, reported for Darwin3 (Ma et
        al., *National Science Review* 11(5) nwae102, 2024).
    pj_per_hop : float
        Energy of one packet crossing one tile hop: 3.5 pJ, the mean of the
        east-west (3.0 pJ) and north-south (4.0 pJ) tile-hop energies reported
        for Loihi (Davies et al., *IEEE Micro* 38(1), 2018, Table 2); Darwin3
        publishes no per-hop figure.
    pj_per_neuron_update : float
        Energy of one neuron update: 52 pJ, Loihi's active neuron update (same
        table).
    pj_per_weight_update : float
        Energy of one synapse's weight update: 120 pJ, Loihi's pairwise-STDP
        synaptic update (same table).
    pj_per_instruction : float
        Energy of one executed instruction: 0 by default, since the per-neuron
        update cost already covers the program; set it to charge instructions
        separately.
    pj_per_vesicle_update : float
        Energy of one vesicle update on a node core (a mailbox word read,
        table lookups against up to four draws, a word written) and of one
        emission-generator update: 52 pJ, charged like a neuron update, whose
        pipeline does the same work; no chip publishes a per-vesicle figure.

    Examples
    --------
    >>> chip = ChipConfig()
    >>> chip.width, chip.height, chip.n_neuron_cores
    (24, 24, 575)
    >>> chip.state_min, chip.state_max, chip.trace_max
    (-32768, 32767, 127)
    >>> ChipConfig(width=4, height=2).neuron_cores()
    [(1, 0), (2, 0), (3, 0), (3, 1), (2, 1), (1, 1), (0, 1)]
    >>> ChipConfig(weight_bits=20)
    Traceback (most recent call last):
    ...
    ValueError: weight_bits = 20 is out of range: must be 2..16
    """

    width: int = 24
    height: int = 24
    controller: tuple[int, int] = (0, 0)
    neurons_per_core: int = 4096
    instruction_words: int = 1024
    state_slots: int = 4
    axon_words: int = 65536
    synapse_words: int = 262144
    mailbox_words: int = 1024
    state_bits: int = 16
    trace_bits: int = 7
    weight_bits: int = 8
    rounding: str = "nearest"
    random_mode: str = "counter"
    seed: int = 0
    learning_interval: int = 1
    pj_per_synop: float = 5.47
    pj_per_hop: float = 3.5
    pj_per_neuron_update: float = 52.0
    pj_per_weight_update: float = 120.0
    pj_per_instruction: float = 0.0
    pj_per_vesicle_update: float = 52.0

    def __post_init__(self):
        for name, (lo, hi) in _INTEGER_BOUNDS.items():
            self._set(name, _integer(name, getattr(self, name), lo, hi))
        if self.width * self.height < 2:
            raise ValueError(
                f"width = {self.width}, height = {self.height}: the mesh needs "
                "at least one neuron core besides the controller"
            )
        self._set("controller", self._checked_controller(self.controller))
        if self.rounding not in ROUNDING_MODES:
            raise ValueError(
                f"rounding = {self.rounding!r} is not one of {ROUNDING_MODES}"
            )
        if self.random_mode not in RANDOM_MODES:
            raise ValueError(
                f"random_mode = {self.random_mode!r} is not supported: only "
                "'counter', the counter-based generator, makes results "
                "independent of which neurons the event-driven emulator skips "
                "and of threads"
            )
        for name in _ENERGY_FIELDS:
            self._set(name, _energy(name, getattr(self, name)))

    def _set(self, name, value):
        """Store a normalised field value on the frozen instance."""
        object.__setattr__(self, name, value)

    def _checked_controller(self, controller):
        """Return the controller as an ``(x, y)`` tuple on the mesh."""
        try:
            x, y = controller
        except (TypeError, ValueError):
            raise ValueError(
                f"controller must be an (x, y) pair, got {controller!r}"
            ) from None
        x = _integer("controller x", x, 0, self.width - 1)
        y = _integer("controller y", y, 0, self.height - 1)
        return (x, y)

    # -- number formats -------------------------------------------------

    @property
    def state_min(self) -> int:
        """Smallest state word, ``-2**(state_bits - 1)``."""
        return -(2 ** (self.state_bits - 1))

    @property
    def state_max(self) -> int:
        """Largest state word, ``2**(state_bits - 1) - 1``."""
        return 2 ** (self.state_bits - 1) - 1

    @property
    def weight_min(self) -> int:
        """Smallest weight, ``-2**(weight_bits - 1)``.

        Examples
        --------
        >>> ChipConfig().weight_min, ChipConfig().weight_max
        (-128, 127)
        """
        return -(2 ** (self.weight_bits - 1))

    @property
    def weight_max(self) -> int:
        """Largest weight, ``2**(weight_bits - 1) - 1``."""
        return 2 ** (self.weight_bits - 1) - 1

    @property
    def trace_max(self) -> int:
        """Largest trace, ``2**trace_bits - 1`` (traces are unsigned)."""
        return 2**self.trace_bits - 1

    # -- tiles ----------------------------------------------------------

    @property
    def n_tiles(self) -> int:
        """Number of tiles, ``width * height``."""
        return self.width * self.height

    @property
    def n_neuron_cores(self) -> int:
        """Number of neuron cores: every tile but the controller."""
        return self.n_tiles - 1

    def core_id(self, x: int, y: int) -> int:
        """Return the id ``y * width + x`` of tile ``(x, y)``.

        Raises
        ------
        ValueError
            If ``(x, y)`` is off the mesh.

        Examples
        --------
        >>> chip = ChipConfig(width=4, height=3)
        >>> chip.core_id(1, 2)
        9
        >>> chip.core_id(4, 0)
        Traceback (most recent call last):
        ...
        ValueError: tile x = 4 is out of range: must be 0..3
        """
        x = _integer("tile x", x, 0, self.width - 1)
        y = _integer("tile y", y, 0, self.height - 1)
        return y * self.width + x

    def core_xy(self, core_id: int) -> tuple[int, int]:
        """Return the tile ``(x, y)`` of core id ``core_id``.

        Raises
        ------
        ValueError
            If ``core_id`` is not in ``0 .. width * height - 1``.

        Examples
        --------
        >>> ChipConfig(width=4, height=3).core_xy(9)
        (1, 2)
        """
        core_id = _integer("core_id", core_id, 0, self.n_tiles - 1)
        return (core_id % self.width, core_id // self.width)

    def neuron_cores(self) -> list[tuple[int, int]]:
        """Return the neuron cores' tiles in serpentine order.

        Row ``y = 0`` left to right, row 1 right to left, and so on, leaving
        out the controller. Consecutive tiles of the full serpentine are
        adjacent, so consecutive cores are one hop apart, except the two on
        either side of the controller (two hops apart) when the controller is
        not at an end of the serpentine.

        Examples
        --------
        >>> ChipConfig(width=3, height=2, controller=(2, 1)).neuron_cores()
        [(0, 0), (1, 0), (2, 0), (1, 1), (0, 1)]
        """
        order = []
        for y in range(self.height):
            xs = range(self.width) if y % 2 == 0 else range(self.width - 1, -1, -1)
            order.extend((x, y) for x in xs if (x, y) != self.controller)
        return order

    # -- serialisation --------------------------------------------------

    def to_dict(self) -> dict:
        """Return the fields as a dict of plain Python values.

        The controller is a list ``[x, y]``, so that the dict can be written as
        YAML or JSON as it is.

        Examples
        --------
        >>> d = ChipConfig(width=8).to_dict()
        >>> d["width"], d["controller"]
        (8, [0, 0])
        >>> ChipConfig.from_dict(d) == ChipConfig(width=8)
        True
        """
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.init}
        out["controller"] = list(self.controller)
        return out

    @classmethod
    def from_dict(cls, d: dict) -> ChipConfig:
        """Build a chip from a dict of fields; missing fields take defaults.

        Raises
        ------
        ValueError
            If ``d`` has keys that are not fields (all are named), or a value
            is invalid.

        Examples
        --------
        >>> ChipConfig.from_dict({"width": 4, "height": 4}).n_neuron_cores
        15
        >>> ChipConfig.from_dict({"widht": 4})
        Traceback (most recent call last):
        ...
        ValueError: unknown ChipConfig fields: 'widht'
        """
        if not isinstance(d, dict):
            raise TypeError(f"a chip description must be a dict, got {d!r}")
        _reject_unknown(d)
        return cls(**d)

    def to_yaml(self, path) -> None:
        """Write the fields to ``path`` as a plain YAML mapping (atomically: a failed
        write leaves a file already at ``path`` as it was).

        Examples
        --------
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "chip.yaml"
        >>> ChipConfig(seed=7).to_yaml(path)
        >>> ChipConfig.from_yaml(path).seed
        7
        """
        write_text(path, yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def from_yaml(cls, path) -> ChipConfig:
        """Read a chip written by :meth:`to_yaml` (or by hand) from ``path``.

        Raises
        ------
        ValueError
            If the file does not hold a YAML mapping, or as :meth:`from_dict`.
        """
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        if isinstance(data, dict):
            return cls.from_dict(data)
        raise ValueError(f"{path}: a chip file must hold a YAML mapping")

    def replace(self, **changes) -> ChipConfig:
        """Return a checked copy with some fields changed.

        Examples
        --------
        >>> ChipConfig().replace(width=8, height=8).n_neuron_cores
        63
        """
        _reject_unknown(changes)
        return dataclasses.replace(self, **changes)


_INTEGER_BOUNDS = {
    "width": (1, _MAX_MESH_SIDE),
    "height": (1, _MAX_MESH_SIDE),
    "neurons_per_core": (1, _MAX_NEURONS_PER_CORE),
    "instruction_words": (1, None),
    "state_slots": (1, None),
    "axon_words": (1, _MAX_AXON_WORDS),
    "synapse_words": (1, _MAX_SYNAPSE_WORDS),
    "mailbox_words": (1, None),
    "state_bits": (2, 16),
    "trace_bits": (1, 15),
    "weight_bits": (2, 16),
    "seed": (0, 2**63 - 1),
    "learning_interval": (1, None),
}

_ENERGY_FIELDS = (
    "pj_per_synop",
    "pj_per_hop",
    "pj_per_neuron_update",
    "pj_per_weight_update",
    "pj_per_instruction",
    "pj_per_vesicle_update",
)


def _reject_unknown(d):
    """Raise ValueError naming every key of ``d`` that is not a field."""
    known = {f.name for f in fields(ChipConfig) if f.init}
    unknown = [k for k in d if k not in known]
    if unknown:
        names = ", ".join(repr(k) for k in unknown)
        raise ValueError(f"unknown ChipConfig fields: {names}")
