"""Spiking networks to put on the chip: populations, projections, plasticity.

A :class:`Network` is written in floating-point units (one tick = one time
step); :func:`nvppl.backend.compile` quantises it for the chip and reports the
quantisation. Plasticity rules are given in chip units, because they act on
the chip's integer weights and 7-bit traces.

Examples
--------
>>> import numpy as np
>>> from nvppl.backend import Network, LIF, STDP
>>> net = Network()
>>> inp = net.add_input("in", 4)
>>> out = net.add_lif("out", 3, LIF(tau_mem=8.0, v_th=1.0))
>>> proj = net.connect(inp, out, np.full((4, 3), 0.3), plasticity=STDP(a_pre=8, a_post=-8, shift=4))
>>> net
Network(populations=['in' (input, 4), 'out' (lif, 3)], projections=1, synapses=12)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from .._validate import positive_int


@dataclass(frozen=True)
class LIF:
    r"""Leaky integrate-and-fire neuron parameters (eq. 54, one tick per step).

    Per tick, with input :math:`S_t = \sum_j w_{ij} s_j(t-1)`:

    .. math::

        I_t = I_{t-1}(1 - 1/\tau_{syn}) + S_t \quad (\text{or } I_t = S_t \text{ when } \tau_{syn} \text{ is None}),

        V_t = V_{t-1}(1 - 1/\tau_{mem}) + I_t + b, \qquad
        V_t \ge V_{th} \Rightarrow \text{spike}, V_t \leftarrow V_{reset}.

    On the chip the decays are shifts: :math:`1/\tau` becomes :math:`2^{-k}` with
    :math:`k = \mathrm{round}(\log_2 \tau)` (``tau = inf``: no leak), reported by
    :func:`~nvppl.backend.compile` when τ is not a power of two.

    Parameters
    ----------
    tau_mem : float
        Membrane time constant in ticks (≥ 1, or ``math.inf`` for no leak).
    tau_syn : float or None
        Synaptic time constant in ticks; None: the current is this tick's input.
    v_th, v_reset, bias : float
        Threshold, reset potential and constant input per tick.
    scale : float or None
        Potential per least significant bit on the chip; None: chosen so the
        largest incoming weight uses the full weight range.
    """

    tau_mem: float = 16.0
    tau_syn: float | None = None
    v_th: float = 1.0
    v_reset: float = 0.0
    bias: float = 0.0
    scale: float | None = None

    def __post_init__(self):
        for name in ("tau_mem", "v_th", "v_reset", "bias"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or math.isnan(value):
                raise ValueError(f"LIF {name} must be a number, got {value!r}")
        if not self.tau_mem >= 1:
            raise ValueError(f"LIF tau_mem must be ≥ 1 tick (or inf), got {self.tau_mem}")
        if self.tau_syn is not None and not (isinstance(self.tau_syn, (int, float)) and self.tau_syn >= 1):
            raise ValueError(f"LIF tau_syn must be None or ≥ 1 tick, got {self.tau_syn!r}")
        for name in ("v_th", "v_reset", "bias"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"LIF {name} must be finite, got {getattr(self, name)}")
        if self.v_reset >= self.v_th:
            raise ValueError(f"LIF v_reset ({self.v_reset}) must be below v_th ({self.v_th})")
        if self.scale is not None and not (math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"LIF scale must be a positive number, got {self.scale!r}")


def _chip_int(value, lo: int, hi: int, what: str) -> int:
    """``value`` as an ``int`` when it is an integer (not a bool) in ``lo..hi``; else a ValueError naming ``what``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
        raise ValueError(f"{what} must be an integer in {lo}..{hi}, got {value!r}")
    return int(value)


def _trace_pair(name, value):
    if value is None:
        return None
    k, inc = value
    return (_chip_int(k, 0, 15, f"{name} decay shift"), _chip_int(inc, 0, 127, f"{name} increment"))


def _amplitude(name, value):
    return _chip_int(value, -128, 127, f"{name} (an amplitude in chip units)")


@dataclass(frozen=True)
class STDP:
    """Pair-based spike-timing-dependent plasticity with traces (eq. 56, 60).

    At each learning tick a synapse j → i changes by
    ``shr(a_pre · x_j · s_i, shift) + shr(a_post · y_i · s_j, shift)`` where
    x is the presynaptic trace (decay shift and increment ``x``), y the
    postsynaptic trace (``y``) and s the spike flags. Units are the chip's:
    weights in weight LSBs, traces in 0..127.

    Parameters
    ----------
    a_pre, a_post : int
        Amplitudes in −128..127 (a_post < 0 for depression).
    shift : int
        Right shift of the product (0..15).
    x, y : (int, int)
        (decay shift, increment) of the pre- and postsynaptic traces.
    """

    a_pre: int = 8
    a_post: int = -8
    shift: int = 4
    x: tuple = (3, 64)
    y: tuple = (3, 64)

    def __post_init__(self):
        object.__setattr__(self, "a_pre", _amplitude("STDP a_pre", self.a_pre))
        object.__setattr__(self, "a_post", _amplitude("STDP a_post", self.a_post))
        object.__setattr__(self, "shift", _chip_int(self.shift, 0, 15, "shift"))
        object.__setattr__(self, "x", _trace_pair("STDP x", self.x))
        object.__setattr__(self, "y", _trace_pair("STDP y", self.y))


@dataclass(frozen=True)
class ThreeFactor:
    """Reward-gated three-factor rule (eq. 55–58, 60).

    At each learning tick a synapse j → i changes by
    ``shr(a_mod · ⌊⌊x_j · y_i / 128⌋ · r_i / 128⌋, shift)`` (plus the STDP terms
    when ``a_pre``/``a_post`` are non-zero). The reward trace r_i of the
    postsynaptic neuron is driven only by reward spikes (projections with
    ``kind="reward"``) and decays with shift ``r``, so weights change only where
    reward arrives.

    Parameters
    ----------
    a_mod : int
        Amplitude of the modulated term (−128..127).
    shift : int
        Right shift of the products.
    x, y : (int, int)
        (decay shift, increment) of the pre- and postsynaptic traces.
    r : int
        Decay shift of the reward trace.
    a_pre, a_post : int
        Optional unmodulated STDP terms.
    """

    a_mod: int = 16
    shift: int = 4
    x: tuple = (3, 64)
    y: tuple = (3, 64)
    r: int = 2
    a_pre: int = 0
    a_post: int = 0

    def __post_init__(self):
        object.__setattr__(self, "a_mod", _amplitude("ThreeFactor a_mod", self.a_mod))
        object.__setattr__(self, "a_pre", _amplitude("ThreeFactor a_pre", self.a_pre))
        object.__setattr__(self, "a_post", _amplitude("ThreeFactor a_post", self.a_post))
        object.__setattr__(self, "shift", _chip_int(self.shift, 0, 15, "shift"))
        object.__setattr__(self, "x", _trace_pair("ThreeFactor x", self.x))
        object.__setattr__(self, "y", _trace_pair("ThreeFactor y", self.y))
        object.__setattr__(self, "r", _chip_int(self.r, 0, 15, "ThreeFactor r (reward-trace decay shift)"))


@dataclass(frozen=True, eq=False)
class Population:
    """A group of neurons of one kind; made by :meth:`Network.add_input` / :meth:`Network.add_lif`.

    Attributes
    ----------
    name : str
    size : int
    kind : {"input", "lif"}
    neuron : LIF or None
        Parameters of a LIF population.
    index : int
        Position in the network.
    """

    name: str
    size: int
    kind: str
    neuron: LIF | None
    index: int

    def __repr__(self):
        return f"Population({self.name!r}, {self.kind}, size={self.size})"


@dataclass(frozen=True, eq=False)
class Projection:
    """Synapses from one population to another; made by :meth:`Network.connect`.

    Attributes
    ----------
    pre, post : Population
    weights : scipy.sparse.csr_matrix
        (pre.size, post.size); stored entries are synapses (an explicit zero is a
        synapse of weight 0).
    kind : {"spike", "reward"}
        Spike synapses add to the target's input current; reward synapses send
        REWARD_SPIKE packets that drive its reward trace (chip units, integers).
    plasticity : None, STDP or ThreeFactor
    index : int
    """

    pre: Population
    post: Population
    weights: sp.csr_matrix
    kind: str
    plasticity: STDP | ThreeFactor | None
    index: int

    @property
    def n_synapses(self) -> int:
        return int(self.weights.nnz)

    def __repr__(self):
        return (f"Projection({self.pre.name!r} -> {self.post.name!r}, {self.kind}, "
                f"synapses={self.n_synapses}, "
                f"plasticity={type(self.plasticity).__name__ if self.plasticity else None})")


@dataclass(eq=False)
class Network:
    """A spiking network: input and LIF populations joined by projections.

    Examples
    --------
    >>> import numpy as np
    >>> net = Network()
    >>> a = net.add_input("a", 2)
    >>> b = net.add_lif("b", 2, LIF(tau_mem=4.0, v_th=1.0))
    >>> _ = net.connect(a, b, np.eye(2))
    >>> [p.name for p in net.populations], net.n_synapses
    (['a', 'b'], 2)
    """

    populations: list = field(default_factory=list)
    projections: list = field(default_factory=list)

    def _add(self, name, size, kind, neuron):
        if not isinstance(name, str) or not name or any(c.isspace() for c in name):
            raise ValueError(f"population name must be a non-empty string without spaces, got {name!r}")
        if name in self.names:
            raise ValueError(f"a population named {name!r} already exists")
        size = positive_int(size, f"population {name!r}: size")
        pop = Population(name, size, kind, neuron, len(self.populations))
        self.populations.append(pop)
        return pop

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.populations]

    def add_input(self, name: str, size: int) -> Population:
        """Add an input population: ``size`` spike sources driven by :meth:`Emulator.run`'s ``inputs``."""
        return self._add(name, size, "input", None)

    def add_lif(self, name: str, size: int, neuron: LIF | None = None) -> Population:
        """Add ``size`` LIF neurons sharing the parameters ``neuron`` (default ``LIF()``)."""
        neuron = LIF() if neuron is None else neuron
        if not isinstance(neuron, LIF):
            raise TypeError(f"population {name!r}: neuron must be an nvppl.backend.LIF, got {type(neuron).__name__}")
        return self._add(name, size, "lif", neuron)

    def population(self, name: str) -> Population:
        """The population called ``name``."""
        for p in self.populations:
            if p.name == name:
                return p
        raise KeyError(f"no population named {name!r}; the network has {self.names}")

    def _resolve(self, pop):
        if isinstance(pop, str):
            return self.population(pop)
        if (not isinstance(pop, Population) or pop.index >= len(self.populations)
                or self.populations[pop.index] is not pop):
            raise ValueError(f"{pop!r} is not a population of this network")
        return pop

    def connect(self, pre, post, weights, *, kind: str = "spike", plasticity=None) -> Projection:
        """Connect ``pre`` to ``post``.

        Parameters
        ----------
        pre, post : Population or str
        weights : array_like or scipy.sparse matrix
            ``(pre.size, post.size)``. Dense: every non-zero entry is a synapse. Sparse: every stored entry is
            a synapse. Spike weights are in potential units; reward weights are
            integer amplitudes added to the reward trace (−128..127).
        kind : {"spike", "reward"}
        plasticity : None, STDP or ThreeFactor
            Only on spike projections into LIF populations.

        Returns
        -------
        Projection
        """
        pre, post = self._resolve(pre), self._resolve(post)
        where = f"projection {pre.name!r} -> {post.name!r}"
        if kind not in ("spike", "reward"):
            raise ValueError(f"{where}: kind must be 'spike' or 'reward', got {kind!r}")
        if post.kind == "input":
            raise ValueError(f"{where}: an input population cannot receive synapses")
        if plasticity is not None:
            if not isinstance(plasticity, (STDP, ThreeFactor)):
                raise TypeError(f"{where}: plasticity must be None, STDP or ThreeFactor, "
                                f"got {type(plasticity).__name__}")
            if kind != "spike":
                raise ValueError(f"{where}: reward projections are not plastic")
        if sp.issparse(weights):
            W = sp.csr_matrix(weights, dtype=np.float64)
            W.sum_duplicates()
            W.sort_indices()
        else:
            dense = np.asarray(weights, dtype=np.float64)
            if dense.shape != (pre.size, post.size):
                raise ValueError(f"{where}: weights must have shape {(pre.size, post.size)}, got {dense.shape}")
            W = sp.csr_matrix(dense)
            W.eliminate_zeros()
        if W.shape != (pre.size, post.size):
            raise ValueError(f"{where}: weights must have shape {(pre.size, post.size)}, got {W.shape}")
        if not np.all(np.isfinite(W.data)):
            j, i = first_entry(W, ~np.isfinite(W.data))
            raise ValueError(f"{where}: weight [{j}, {i}] is not finite")
        if kind == "reward":
            bad = (W.data != np.round(W.data)) | (W.data < -128) | (W.data > 127)
            if bad.any():
                j, i = first_entry(W, bad)
                raise ValueError(f"{where}: reward weight [{j}, {i}] = {W[j, i]} is not an integer amplitude "
                                 "in -128..127")
        for other in self.projections:
            if other.pre is pre and other.post is post and other.kind == kind:
                raise ValueError(f"{where}: a {kind} projection between these populations exists already "
                                 "(merge the weights into one projection)")
        proj = Projection(pre, post, W, kind, plasticity, len(self.projections))
        self.projections.append(proj)
        return proj

    @property
    def n_neurons(self) -> int:
        return sum(p.size for p in self.populations)

    @property
    def n_synapses(self) -> int:
        return sum(p.n_synapses for p in self.projections)

    def incoming(self, pop) -> list[Projection]:
        """Projections into ``pop``."""
        pop = self._resolve(pop)
        return [p for p in self.projections if p.post is pop]

    def outgoing(self, pop) -> list[Projection]:
        """Projections out of ``pop``."""
        pop = self._resolve(pop)
        return [p for p in self.projections if p.pre is pop]

    def __repr__(self):
        pops = ", ".join(f"{p.name!r} ({p.kind}, {p.size})" for p in self.populations)
        return f"Network(populations=[{pops}], projections={len(self.projections)}, synapses={self.n_synapses})"


def first_entry(W, mask) -> tuple:
    """(row, column) of the first stored entry of CSR ``W`` where ``mask`` holds.

    Examples
    --------
    >>> W = sp.csr_matrix(np.array([[0.0, 2.0], [3.0, 4.0]]))
    >>> first_entry(W, W.data > 2.5)
    (1, 0)
    """
    k = int(np.flatnonzero(mask)[0])
    row = int(np.searchsorted(W.indptr, k, side="right") - 1)
    return row, int(W.indices[k])
