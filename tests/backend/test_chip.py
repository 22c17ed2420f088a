"""Tests of nvppl.backend.chip: the chip description."""

import dataclasses
import math
import tempfile
from itertools import pairwise
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from nvppl.backend.chip import ChipConfig


def test_defaults_follow_the_guide():
    chip = ChipConfig()
    assert (chip.width, chip.height, chip.controller) == (24, 24, (0, 0))
    assert chip.neurons_per_core == 4096
    assert (chip.instruction_words, chip.state_slots) == (1024, 4)
    assert (chip.axon_words, chip.synapse_words, chip.mailbox_words) == (
        65536,
        262144,
        1024,
    )
    assert (chip.state_bits, chip.trace_bits, chip.weight_bits) == (16, 7, 8)
    assert (chip.rounding, chip.random_mode, chip.seed) == ("nearest", "counter", 0)
    assert chip.learning_interval == 1
    assert chip.n_neuron_cores == 575
    assert chip.pj_per_synop == 5.47
    assert chip.pj_per_hop == 3.5
    assert chip.pj_per_neuron_update == 52.0
    assert chip.pj_per_weight_update == 120.0
    assert chip.pj_per_instruction == 0.0


def test_docstring_names_the_energy_sources():
    doc = ChipConfig.__doc__
    for source in ("nwae102", "IEEE Micro", "Table 2", "Loihi", "Darwin3"):
        assert source in doc


@given(
    state_bits=st.integers(2, 16),
    trace_bits=st.integers(1, 15),
    weight_bits=st.integers(2, 16),
)
@settings(max_examples=50)
def test_number_ranges(state_bits, trace_bits, weight_bits):
    chip = ChipConfig(
        state_bits=state_bits, trace_bits=trace_bits, weight_bits=weight_bits
    )
    assert chip.state_max - chip.state_min + 1 == 2**state_bits
    assert chip.state_max == -chip.state_min - 1
    assert chip.weight_max - chip.weight_min + 1 == 2**weight_bits
    assert chip.weight_max == -chip.weight_min - 1
    assert chip.trace_max == 2**trace_bits - 1


def test_default_number_ranges():
    chip = ChipConfig()
    assert (chip.state_min, chip.state_max) == (-32768, 32767)
    assert (chip.weight_min, chip.weight_max) == (-128, 127)
    assert chip.trace_max == 127


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("width", 0),
        ("width", 33),
        ("height", 0),
        ("height", 33),
        ("neurons_per_core", 0),
        ("neurons_per_core", 4097),
        ("instruction_words", 0),
        ("state_slots", 0),
        ("axon_words", 0),
        ("axon_words", 2**24 + 1),
        ("synapse_words", 0),
        ("synapse_words", 2**20 + 1),
        ("mailbox_words", 0),
        ("state_bits", 1),
        ("state_bits", 17),
        ("trace_bits", 0),
        ("trace_bits", 16),
        ("weight_bits", 1),
        ("weight_bits", 17),
        ("rounding", "up"),
        ("random_mode", "philox"),
        ("seed", -1),
        ("seed", 2**63),
        ("learning_interval", 0),
        ("pj_per_synop", -0.5),
        ("pj_per_hop", math.inf),
        ("pj_per_neuron_update", math.nan),
        ("pj_per_weight_update", -1),
        ("pj_per_instruction", -math.inf),
    ],
)
def test_invalid_field_is_named(name, value):
    with pytest.raises(ValueError, match=name) as info:
        ChipConfig(**{name: value})
    assert str(value) in str(info.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("width", 32),
        ("height", 32),
        ("neurons_per_core", 4096),
        ("seed", 2**63 - 1),
        ("axon_words", 2**24),
        ("synapse_words", 2**20),
        ("state_bits", 2),
        ("trace_bits", 15),
        ("weight_bits", 16),
        ("rounding", "stochastic"),
        ("rounding", "floor"),
        ("pj_per_hop", 0),
    ],
)
def test_boundary_values_are_accepted(name, value):
    assert getattr(ChipConfig(**{name: value}), name) == value


def test_random_mode_error_says_why():
    with pytest.raises(ValueError, match="counter") as info:
        ChipConfig(random_mode="philox")
    assert "not supported" in str(info.value)


@pytest.mark.parametrize("controller", [(24, 0), (0, 24), (-1, 0)])
def test_controller_off_the_mesh(controller):
    with pytest.raises(ValueError, match="controller"):
        ChipConfig(controller=controller)


@pytest.mark.parametrize("controller", [(0,), (0, 0, 0), 3, "ab"])
def test_controller_must_be_a_pair(controller):
    with pytest.raises((ValueError, TypeError), match="controller"):
        ChipConfig(controller=controller)


def test_controller_is_stored_as_a_tuple():
    chip = ChipConfig(controller=[3, 2])
    assert chip.controller == (3, 2)
    assert isinstance(chip.controller, tuple)
    hash(chip)


def test_single_tile_mesh_has_no_neuron_core():
    with pytest.raises(ValueError, match="width = 1, height = 1"):
        ChipConfig(width=1, height=1)
    assert ChipConfig(width=1, height=2).n_neuron_cores == 1


@pytest.mark.parametrize(
    ("name", "value"),
    [("width", "24"), ("width", 24.0), ("seed", True), ("pj_per_hop", "3.5")],
)
def test_wrong_type_is_named(name, value):
    with pytest.raises(TypeError, match=name):
        ChipConfig(**{name: value})


def test_fields_are_keyword_only_and_frozen():
    with pytest.raises(TypeError):
        ChipConfig(24)
    chip = ChipConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        chip.width = 3


meshes = st.tuples(st.integers(1, 32), st.integers(1, 32)).filter(
    lambda wh: wh[0] * wh[1] >= 2
)


@st.composite
def chips(draw):
    width, height = draw(meshes)
    controller = (draw(st.integers(0, width - 1)), draw(st.integers(0, height - 1)))
    energy = st.floats(0, 1e6, allow_nan=False, allow_infinity=False)
    return ChipConfig(
        width=width,
        height=height,
        controller=controller,
        neurons_per_core=draw(st.integers(1, 4096)),
        state_slots=draw(st.integers(1, 64)),
        state_bits=draw(st.integers(2, 16)),
        trace_bits=draw(st.integers(1, 15)),
        weight_bits=draw(st.integers(2, 16)),
        rounding=draw(st.sampled_from(["floor", "nearest", "stochastic"])),
        seed=draw(st.integers(0, 2**63 - 1)),
        learning_interval=draw(st.integers(1, 1000)),
        pj_per_synop=draw(energy),
        pj_per_hop=draw(energy),
        pj_per_instruction=draw(energy),
    )


@given(chips(), st.data())
@settings(max_examples=60)
def test_core_id_and_core_xy_are_inverse(chip, data):
    x = data.draw(st.integers(0, chip.width - 1))
    y = data.draw(st.integers(0, chip.height - 1))
    cid = chip.core_id(x, y)
    assert cid == y * chip.width + x
    assert 0 <= cid < chip.width * chip.height
    assert chip.core_xy(cid) == (x, y)


def test_core_id_off_the_mesh():
    chip = ChipConfig(width=4, height=3)
    with pytest.raises(ValueError, match="x = 4"):
        chip.core_id(4, 0)
    with pytest.raises(ValueError, match="y = 3"):
        chip.core_id(0, 3)
    with pytest.raises(ValueError, match="core_id = 12"):
        chip.core_xy(12)
    with pytest.raises(ValueError, match="core_id = -1"):
        chip.core_xy(-1)


@given(chips())
@settings(max_examples=60)
def test_neuron_cores_are_every_tile_but_the_controller(chip):
    cores = chip.neuron_cores()
    assert len(cores) == chip.n_neuron_cores == chip.width * chip.height - 1
    assert chip.controller not in cores
    every = {(x, y) for x in range(chip.width) for y in range(chip.height)}
    assert set(cores) == every - {chip.controller}


def _serpentine(width, height):
    return [
        (x if y % 2 == 0 else width - 1 - x, y)
        for y in range(height)
        for x in range(width)
    ]


@given(chips())
@settings(max_examples=60)
def test_neuron_cores_follow_the_serpentine(chip):
    full = _serpentine(chip.width, chip.height)
    assert chip.neuron_cores() == [t for t in full if t != chip.controller]


def _gaps(cores):
    return [abs(a[0] - b[0]) + abs(a[1] - b[1]) for a, b in pairwise(cores)]


@given(meshes, st.booleans())
@settings(max_examples=100)
def test_serpentine_cores_are_adjacent(wh, at_end):
    width, height = wh
    last = _serpentine(width, height)[-1]
    chip = ChipConfig(width=width, height=height, controller=last if at_end else (0, 0))
    assert set(_gaps(chip.neuron_cores())) <= {1}


@given(chips())
@settings(max_examples=60)
def test_only_the_controller_breaks_adjacency(chip):
    full = _serpentine(chip.width, chip.height)
    inside = full.index(chip.controller) not in (0, len(full) - 1)
    gaps = _gaps(chip.neuron_cores())
    assert sorted(gaps) == [1] * (len(gaps) - inside) + [2] * inside


def test_serpentine_example():
    chip = ChipConfig(width=3, height=3)
    assert chip.neuron_cores() == [
        (1, 0),
        (2, 0),
        (2, 1),
        (1, 1),
        (0, 1),
        (0, 2),
        (1, 2),
        (2, 2),
    ]


@given(chips())
@settings(max_examples=100)
def test_dict_round_trip(chip):
    d = chip.to_dict()
    assert isinstance(d["controller"], list)
    assert ChipConfig.from_dict(d) == chip


def test_from_dict_uses_defaults_for_missing_fields():
    assert ChipConfig.from_dict({"seed": 5}) == ChipConfig(seed=5)
    assert ChipConfig.from_dict({}) == ChipConfig()


def test_from_dict_names_unknown_keys():
    with pytest.raises(ValueError, match="'widht'.*'colour'"):
        ChipConfig.from_dict({"widht": 4, "seed": 1, "colour": "red"})


def test_from_dict_validates():
    with pytest.raises(ValueError, match="weight_bits"):
        ChipConfig.from_dict({"weight_bits": 40})


@given(chips())
@settings(max_examples=50)
def test_yaml_round_trip(chip):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "chip.yaml"
        chip.to_yaml(path)
        plain = yaml.safe_load(path.read_text())
        assert isinstance(plain, dict)
        assert plain["width"] == chip.width
        assert ChipConfig.from_yaml(path) == chip


def test_yaml_file_written_by_hand(tmp_path):
    path = tmp_path / "chip.yaml"
    path.write_text("width: 8\nheight: 4\ncontroller: [7, 3]\nrounding: floor\n")
    chip = ChipConfig.from_yaml(path)
    assert (chip.width, chip.height, chip.controller) == (8, 4, (7, 3))
    assert chip.rounding == "floor"


def test_yaml_file_must_hold_a_mapping(tmp_path):
    path = tmp_path / "chip.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="chip.yaml"):
        ChipConfig.from_yaml(path)


def test_yaml_unknown_key_is_named(tmp_path):
    path = tmp_path / "chip.yaml"
    path.write_text("width: 8\nfrequency: 100\n")
    with pytest.raises(ValueError, match="frequency"):
        ChipConfig.from_yaml(path)


def test_replace_returns_a_validated_copy():
    chip = ChipConfig()
    other = chip.replace(width=8, rounding="floor")
    assert (other.width, other.rounding) == (8, "floor")
    assert (chip.width, chip.rounding) == (24, "nearest")
    assert other.height == chip.height
    with pytest.raises(ValueError, match="width"):
        chip.replace(width=40)
    with pytest.raises(ValueError, match="controller"):
        chip.replace(width=4, height=4, controller=(5, 0))
    with pytest.raises(ValueError, match="'colour'"):
        chip.replace(colour="red")
