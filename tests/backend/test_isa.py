"""Tests of the instruction set (nvppl.backend.isa) against the emulator guide.

The reference below (``ref_run``) is an independent one-lane interpreter on
Python integers that decodes words with its own bit operations; the vectorised
interpreter must agree with it bit for bit.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats

from nvppl.backend import isa
from nvppl.backend.isa import (
    Cond,
    Instruction,
    ISAError,
    NeuronProgram,
    Opcode,
    Reg,
    Section,
    assemble,
    build_program,
    decode,
    disassemble,
    encode,
    execute,
)

M64 = (1 << 64) - 1
RAND = 5
HYP = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --------------------------------------------------------------------------- independent reference

def py_mix(z):
    z = (z + 0x9E3779B97F4A7C15) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def py_sat(v, bits):
    return max(-(1 << (bits - 1)), min((1 << (bits - 1)) - 1, v))


def py_shr(v, k, rounding, u=None):
    if k == 0:
        return v
    if rounding == "floor":
        return v // 2**k
    if rounding == "nearest":
        return (v + 2 ** (k - 1)) // 2**k
    return (v + u % 2**k) // 2**k


def ref_run(words, start, end, regs, state, traces, syn, s_pre, s_post, h, n0, rounding,
            sb=16, tb=7, wb=8):
    """One lane; returns (regs, state, traces, syn, fired, next draw index, instructions)."""
    regs, state, traces, syn = list(regs), list(state), list(traces), list(syn)
    n, flag, fired, pc, count = n0, 0, False, start, 0

    def u():
        nonlocal n
        value = py_mix((h + n) & M64) >> 48
        n += 1
        return value

    def get(r):
        return u() >> 1 if r == RAND else regs[r]

    def sh(v, k):
        if k == 0:
            return v
        return py_shr(v, k, rounding, u() if rounding == "stochastic" else None)

    while pc < end:
        w = words[pc]
        op, d, s, raw = w >> 26, (w >> 22) & 15, (w >> 18) & 15, w & 0xFFFF
        imm = raw - 65536 if raw & 0x8000 else raw
        count += 1
        pc += 1
        if op in (1, 2, 3):
            mem = {1: state, 2: traces, 3: syn}[op]
            if s == 0:
                regs[d] = mem[imm]
            else:
                v = get(d)
                mem[imm] = (v if op == 1 else max(0, min(2**tb - 1, v)) if op == 2 else py_sat(v, wb))
        elif op == 4:
            leak = 0 if imm == 16 else sh(regs[0], imm)
            regs[0] = py_sat(regs[0] - leak + regs[2], sb)
        elif op == 5:
            mode, k, inc = raw >> 15, (raw >> 8) & 15, raw & 127
            cur = regs[d]
            src = get(s)
            add = (inc if src != 0 else 0) if mode == 0 else src
            regs[d] = max(0, min(2**tb - 1, cur - sh(cur, k) + add))
        elif op == 6:
            mode, s_, a = raw >> 12, (raw >> 8) & 15, raw & 255
            a = a - 256 if a >= 128 else a
            x, y, r = regs[7], regs[8], regs[9]
            p = [x * s_post, y * s_pre, (x * y) // 2**tb, ((x * y) // 2**tb * r) // 2**tb][mode]
            regs[6] = py_sat(regs[6] + sh(a * p, s_), wb)
        elif op == 7:
            if regs[0] >= regs[1]:
                regs[0], regs[10], fired = regs[4], 1, True
            else:
                regs[10] = 0
        elif op in (8, 10):
            a = get(s)
            b = get(raw & 15)
            regs[d] = py_sat(a + b if op == 8 else a - b, sb)
        elif op == 9:
            regs[d] = py_sat(get(s) + imm, sb)
        elif op == 11:
            v = get(s)
            regs[d] = py_sat(v * 2**imm, sb) if imm >= 0 else sh(v, -imm)
        elif op == 12:
            a = get(s)
            b = get(raw & 15)
            flag = (a > b) - (a < b)
        elif op == 13:
            take = [True, flag == 0, flag != 0, flag < 0, flag >= 0, flag > 0, flag <= 0][d]
            if take:
                pc += imm
    return regs, state, traces, syn, fired, n, count


# --------------------------------------------------------------------------- strategies

REG = st.integers(0, 15)
WREG = st.integers(0, 15).filter(lambda r: r != RAND)


def uptls_imm(mode, k, inc):
    raw = mode * 2**15 + k * 2**8 + inc
    return raw - 65536 if raw >= 32768 else raw


def uptsyn_imm(mode, a, s):
    return mode * 2**12 + s * 2**8 + a % 256


@st.composite
def instructions(draw, ops=tuple(range(14)), slots=None, forward=None):
    """A valid instruction; ``slots`` limits memory slots, ``forward`` = (j, L) makes JC jump forward."""
    op = draw(st.sampled_from(ops))
    if op in (0, 7):
        return Instruction(op, 0, 0, 0)
    if op in (1, 2, 3):
        direction = draw(st.integers(0, 1))
        hi = {1: 0x7FFF, 2: 2, 3: 0x7FFF}[op] if slots is None else slots[op]
        return Instruction(op, draw(REG if direction else WREG), direction, draw(st.integers(0, hi)))
    if op == 4:
        return Instruction(op, 0, 0, draw(st.integers(0, 16)))
    if op == 5:
        mode = draw(st.integers(0, 1))
        inc = draw(st.integers(0, 127)) if mode == 0 else 0
        return Instruction(op, draw(WREG), draw(REG), uptls_imm(mode, draw(st.integers(0, 15)), inc))
    if op == 6:
        return Instruction(op, 0, 0, uptsyn_imm(draw(st.integers(0, 3)), draw(st.integers(-128, 127)),
                                                draw(st.integers(0, 15))))
    if op in (8, 10):
        return Instruction(op, draw(WREG), draw(REG), draw(REG))
    if op == 9:
        return Instruction(op, draw(WREG), draw(REG), draw(st.integers(-32768, 32767)))
    if op == 11:
        return Instruction(op, draw(WREG), draw(REG), draw(st.integers(-15, 15)))
    if op == 12:
        return Instruction(op, 0, draw(REG), draw(REG))
    if forward is None:
        offset = draw(st.integers(-32768, 32767))
    else:
        j, length = forward
        offset = draw(st.integers(j + 1, length)) - j - 1
    return Instruction(op, draw(st.integers(0, 6)), 0, offset)


SECTION_OPS = {
    0: (1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12, 13),
    1: (1, 2, 4, 5, 7, 8, 9, 10, 11, 12, 13),
    2: (1, 2, 4, 5, 8, 9, 10, 11, 12, 13),
}


@st.composite
def programs(draw):
    """Words of a random valid program (0–3 NPCs, JC anywhere inside its section)."""
    n_npc = draw(st.integers(0, 3))
    words = []
    for sec in range(min(n_npc + 1, 3)):
        length = draw(st.integers(0, 8))
        body = []
        for j in range(length):
            ins = draw(instructions(SECTION_OPS[sec]))
            if ins.op == Opcode.JC:
                ins = ins._replace(imm=draw(st.integers(0, length)) - j - 1)
            body.append(encode(ins))
        words += body
        if sec < n_npc:
            words.append(0)
    return words


# --------------------------------------------------------------------------- encoding

@HYP
@given(instructions())
def test_encode_decode_roundtrip(ins):
    word = encode(ins)
    assert 0 <= word < 2**32
    assert (word >> 26, (word >> 22) & 15, (word >> 18) & 15, (word >> 16) & 3) == (ins.op, ins.rd, ins.rs, 0)
    assert word & 0xFFFF == ins.imm % 65536
    assert decode(word) == ins


@HYP
@given(st.one_of(st.integers(0, 2**32 - 1),
                 instructions().map(encode),
                 st.tuples(instructions().map(encode), st.integers(0, 31)).map(lambda t: t[0] ^ (1 << t[1]))))
def test_decode_rejects_or_roundtrips(word):
    try:
        ins = decode(word)
    except ISAError as err:
        assert f"0x{word:08x}" in str(err)
    else:
        assert encode(ins) == word


def w(op, rd=0, rs=0, imm=0, z=0):
    return (op << 26) | (rd << 22) | (rs << 18) | (z << 16) | (imm & 0xFFFF)


@pytest.mark.parametrize("word, fragment", [
    (w(14), "unknown opcode 14"),
    (w(63), "unknown opcode 63"),
    (w(9, 0, 0, 1, z=1), "bits 17–16"),
    (w(8, 0, 0, 0, z=2), "bits 17–16"),
    (w(0, 0, 0, 1), "unused"),
    (w(7, 1), "unused"),
    (w(4, 0, 0, 17), "km 17"),
    (w(4, 1, 0, 3), "unused"),
    (w(11, 0, 0, 16), "shift 16"),
    (w(11, 0, 0, -16), "shift -16"),
    (w(5, 0, 0, 1 << 12), "k field 16"),
    (w(5, 0, 0, 128), "inc 128"),
    (w(5, 0, 0, (1 << 15) | 5), "inc field 5"),
    (w(5, RAND, 0, 0), "RAND"),
    (w(6, 0, 0, 4 << 12), "mode 4"),
    (w(6, 0, 3, 0), "unused"),
    (w(13, 7, 0, 0), "condition 7"),
    (w(13, 0, 1, 0), "unused rs"),
    (w(1, 0, 2, 0), "direction 2"),
    (w(3, 0, 15, 0), "direction 15"),
    (w(2, 0, 0, 3), "slot 3"),
    (w(1, 0, 0, -1), "slot -1"),
    (w(1, RAND, 0, 0), "RAND"),
    (w(2, RAND, 0, 0), "RAND"),
    (w(3, RAND, 0, 0), "RAND"),
    (w(8, 0, 1, 0x10), "bits 15–4"),
    (w(10, RAND, 1, 2), "RAND"),
    (w(9, RAND, 1, 2), "RAND"),
    (w(11, RAND, 1, 2), "RAND"),
    (w(12, 1, 1, 2), "unused rd"),
    (w(12, 0, 1, 0x20), "bits 15–4"),
])
def test_decode_rejects(word, fragment):
    with pytest.raises(ISAError, match=f"word 0x{word:08x}") as err:
        decode(word)
    assert fragment in str(err.value)
    with pytest.raises(ISAError, match=rf"word 2 \(0x{word:08x}\)"):
        NeuronProgram.from_words([w(0), w(9, 0, 0, 1), word])


def test_stores_may_read_rand():
    for op in (1, 2, 3):
        assert decode(w(op, RAND, 1, 0)) == Instruction(op, RAND, 1, 0)


def test_encode_rejects_bad_fields():
    for ins in [Instruction(Opcode.UPTVT, 0, 0, 17), Instruction(Opcode.ADD, Reg.RAND, 0, 0),
                Instruction(Opcode.ADDI, 0, 0, 40000), Instruction(Opcode.ADD, 16, 0, 0),
                Instruction(Opcode.JC, 7, 0, 0), Instruction(14, 0, 0, 0)]:
        with pytest.raises(ISAError, match="cannot encode"):
            encode(ins)


# --------------------------------------------------------------------------- programs and assembler

@HYP
@given(programs())
def test_program_text_roundtrip(words):
    prog = NeuronProgram.from_words(words)
    text = disassemble(words)
    again = assemble(text)
    assert again.words.tolist() == words
    assert again == prog and hash(again) == hash(prog)
    assert disassemble(again) == text == prog.text
    assert len(prog) == len(words)


def test_sections_and_immutability():
    add = "ADDI R0, R0, 1"
    cases = {
        add: ((0, 1), (1, 1), (1, 1)),
        f"{add}\nNPC\n{add}\n{add}": ((0, 1), (2, 4), (4, 4)),
        f"NPC\nNPC\n{add}": ((0, 0), (1, 1), (2, 3)),
        f"NPC\nGSPRS\nNPC\n{add}\nNPC": ((0, 0), (1, 2), (3, 4)),
        "": ((0, 0), (0, 0), (0, 0)),
    }
    for text, sections in cases.items():
        assert assemble(text).sections == sections, text
    prog = assemble(f"{add}\nNPC")
    assert prog.words.dtype == np.uint32
    with pytest.raises(ValueError):
        prog.words[0] = 0
    assert prog.instructions == (Instruction(Opcode.ADDI, Reg.R0, Reg.R0, 1), Instruction(Opcode.NPC))
    assert prog != assemble(add) and prog == assemble("addi r0, r0, 0x1 ; one\nnpc")


def test_assembler_syntax():
    text = """
    ; a comment line
    # another
    start: again: LSSYN wgt, [0]   # load
           UPTSYN prepost, -0x10, 0x3
    skip:
           jc al, end
           UPTSYN mod, 127, 15
    end:   LSSYN [ 0 ], WGT
           NPC
           Cmp vt, Vth
           JC GE, +1
           ADDI I, WGTSUM, -32768
           SFTI R3, RAND, -15
           jc le, -4
           GSPRS
           NPC
           UPTLS TREW, RWSUM, 3
           UPTLS TPRE, SPK, 15, 127
           NPC
    """
    prog = assemble(text)
    ins = prog.instructions
    assert ins[0] == Instruction(Opcode.LSSYN, Reg.WGT, 0, 0)
    assert ins[1] == Instruction(Opcode.UPTSYN, 0, 0, 2 * 4096 + 3 * 256 + 0xF0)
    assert ins[2] == Instruction(Opcode.JC, Cond.AL, 0, 1)
    assert ins[7] == Instruction(Opcode.JC, Cond.GE, 0, 1)
    assert ins[8] == Instruction(Opcode.ADDI, Reg.I, Reg.WGTSUM, -32768)
    assert ins[10] == Instruction(Opcode.JC, Cond.LE, 0, -4)
    assert ins[13] == Instruction(Opcode.UPTLS, Reg.TREW, Reg.RWSUM, uptls_imm(1, 3, 0))
    assert ins[14] == Instruction(Opcode.UPTLS, Reg.TPRE, Reg.SPK, uptls_imm(0, 15, 127))
    assert prog.sections == ((0, 5), (6, 12), (13, 15))
    assert assemble(prog.text) == prog


@pytest.mark.parametrize("text, line, fragment", [
    ("NPC\nFOO R0", 2, "unknown mnemonic 'FOO'"),
    ("ADD R0, R1, R4x", 1, "unknown register 'R4x'"),
    ("NPC\n\nJC AL, nowhere", 3, "unknown label 'nowhere'"),
    ("ADDI R0, R0, 32768", 1, "out of range"),
    ("ADDI R0, R0, -0x8001", 1, "out of range"),
    ("ADDI R0, R0, 1.5", 1, "not an integer"),
    ("UPTVT 17", 1, "km 17"),
    ("SFTI R0, R0, 16", 1, "shift 16"),
    ("UPTSYN PRE, 128, 1", 1, "amplitude 128"),
    ("UPTSYN BOTH, 1, 1", 1, "unknown UPTSYN mode"),
    ("NPC\nNPC\nUPTLS R0, SPK, 1, 128", 3, "inc 128"),
    ("NPC\nNPC\nUPTLS R0, SPK, 16", 3, "k 16"),
    ("LSLS R0, [3]", 1, "slot 3"),
    ("LSIS R0, 3", 1, "memory operand"),
    ("JC XX, 0", 1, "unknown condition"),
    ("ADD R0, R1", 1, "takes 3 operands"),
    ("ADD R0, , R1", 1, "empty operand"),
    ("ADD RAND, R1, R2", 1, "RAND"),
    ("LSIS RAND, [0]", 1, "RAND"),
    ("NPC\nNPC\nUPTLS RAND, SPK, 1, 1", 3, "RAND"),
    ("SFTI rand, R0, 1", 1, "RAND"),
    ("a: ADDI R0, R0, 1\nNPC\nJC AL, a", 3, "outside the neuron section"),
    ("ADDI R0, R0, 1\nJC AL, +1", 2, "outside the weight section"),
    ("NPC\nADDI R0, R0, 1\nJC AL, -3", 3, "outside the neuron section"),
    ("NPC\nLSSYN WGT, [0]", 2, "LSSYN is only allowed in the weight section"),
    ("NPC\nNPC\nUPTSYN PRE, 1, 1", 3, "UPTSYN is only allowed in the weight section"),
    ("GSPRS", 1, "GSPRS is only allowed in the neuron section"),
    ("NPC\nNPC\nGSPRS", 3, "GSPRS is only allowed in the neuron section"),
    ("NPC\nNPC\nNPC\nADDI R0, R0, 1", 4, "nothing may follow"),
    ("NPC\nNPC\nNPC\nNPC", 4, "nothing may follow"),
    ("x: NPC\nx: NPC", 2, "duplicate label 'x'"),
])
def test_assembler_errors_name_the_line(text, line, fragment):
    with pytest.raises(ISAError) as err:
        assemble(text)
    msg = str(err.value)
    bad = text.splitlines()[line - 1]
    assert msg.startswith(f"line {line} ({bad!r}): "), msg
    assert fragment in msg
    assert err.value.line == line


def test_max_words():
    text = "\n".join(["ADDI R0, R0, 1"] * 5)
    assert len(assemble(text, max_words=5)) == 5
    with pytest.raises(ISAError, match=r"line 5 .*max_words = 4"):
        assemble(text, max_words=4)
    with pytest.raises(ISAError, match=r"word 1024 .*max_words = 1024"):
        NeuronProgram.from_words([encode(Instruction(Opcode.ADDI, 12, 12, 1))] * 1025)
    assert len(assemble("NPC\n" + "\n".join(["GSPRS"] * 1100), max_words=None)) == 1101


def test_jc_to_the_section_end_is_allowed():
    prog = assemble("NPC\nJC AL, done\nADDI VT, VT, 5\ndone: NPC\nJC AL, fin\nfin:")
    assert prog.instructions[1].imm == 1 and prog.instructions[4].imm == 0
    assert "L0:\n    NPC" in prog.text and prog.text.endswith("L1:\n")
    regs = np.zeros((16, 1), dtype=np.int64)
    assert execute(prog, Section.NEURON, regs).instructions.tolist() == [1]
    assert regs[Reg.VT, 0] == 0


# --------------------------------------------------------------------------- fixed point and RNG

@HYP
@given(st.lists(st.integers(-2**40, 2**40), min_size=1, max_size=30), st.integers(0, 20),
       st.integers(0, 2**16 - 1))
def test_shr_matches_python(values, k, u):
    v = np.array(values, dtype=np.int64)
    for rounding in ("floor", "nearest"):
        assert isa.shr(v, k, rounding).tolist() == [py_shr(x, k, rounding) for x in values]
    got = isa.shr(v, k, "stochastic", draws=np.full(v.shape, u)).tolist()
    assert got == [py_shr(x, k, "stochastic", u) for x in values]


def test_saturate_both_ends():
    assert isa.saturate([-2**40, -129, -128, 127, 128, 2**40], 8).tolist() == [-128, -128, -128, 127, 127, 127]
    assert isa.saturate([-32769, 32768], 16).tolist() == [-32768, 32767]


def test_stochastic_rounding_is_unbiased():
    # 40000 lanes each round 13 / 2**3 = 1.625: results are 1 or 2, P(2) = 0.625,
    # standard error sqrt(0.625 * 0.375 / 40000) = 0.0024; tolerance 5 standard errors.
    n = 40000
    prog = assemble("NPC\nSFTI R0, R1, -3\nSFTI R2, R3, -3")
    regs = np.zeros((16, n), dtype=np.int64)
    regs[Reg.R1], regs[Reg.R3] = 13, -13
    h = isa.unit_key(99, 1, np.arange(n), 5)
    counters = np.zeros(n, dtype=np.int64)
    execute(prog, Section.NEURON, regs, h=h, counters=counters, rounding="stochastic")
    assert set(np.unique(regs[Reg.R0]).tolist()) == {1, 2}
    assert set(np.unique(regs[Reg.R2]).tolist()) == {-2, -1}
    se = np.sqrt(0.625 * 0.375 / n)
    assert abs(regs[Reg.R0].mean() - 1.625) < 5 * se
    assert abs(regs[Reg.R2].mean() + 1.625) < 5 * se
    assert counters.tolist() == [2] * n


@HYP
@given(st.lists(st.integers(0, M64), min_size=1, max_size=20))
def test_mix_matches_splitmix64(zs):
    assert isa.mix(np.array(zs, dtype=np.uint64)).tolist() == [py_mix(z) for z in zs]


@HYP
@given(st.integers(0, M64), st.integers(0, 574), st.integers(0, 2**31), st.integers(0, 2**32 - 1),
       st.integers(0, 1000))
def test_unit_key_and_draw_match_formula(seed, core, unit, tick, n):
    h = py_mix(py_mix(py_mix(seed) ^ core) ^ ((unit * 2**32 + tick) & M64))
    assert int(isa.unit_key(seed, core, unit, tick)) == h
    assert int(isa.draw(np.uint64(h), n)) == py_mix((h + n) & M64) >> 48


def test_draws_are_uniform():
    # 50 000 draws (500 units x 100 draws, fixed seed); chi-square over 16 equiprobable
    # bins of the top 4 bits (and of the low 4 bits): reject uniformity below p = 1e-3.
    h = isa.unit_key(2024, 5, np.arange(500), 7)
    u = isa.draw(h[:, None], np.arange(100)[None, :]).ravel()
    assert u.size == 50_000 and int(u.max()) < 2**16
    for bins in (u >> np.uint64(12), u & np.uint64(15)):
        counts = np.bincount(bins.astype(np.int64), minlength=16)
        assert counts.size == 16
        assert stats.chisquare(counts).pvalue > 1e-3


# --------------------------------------------------------------------------- interpreter vs reference

@st.composite
def section_cases(draw):
    section = draw(st.sampled_from([0, 1, 2]))
    length = draw(st.integers(1, 14))
    slots = {1: 3, 2: 2, 3: 0}
    body = [draw(instructions(SECTION_OPS[section], slots=slots, forward=(j, length))) for j in range(length)]
    words = [0] * section + [encode(i) for i in body]
    return section, words, draw(st.sampled_from(isa.ROUNDINGS)), draw(st.integers(0, 2**32))


@settings(HYP, max_examples=150)
@given(section_cases())
def test_execute_matches_reference(case):
    section, words, rounding, seed = case
    rng = np.random.default_rng(seed)
    n = 24
    pool = np.array([-32768, -32767, -129, -128, -1, 0, 1, 2, 127, 128, 32766, 32767])
    regs = np.where(rng.random((16, n)) < 0.5, rng.choice(pool, (16, n)), rng.integers(-300, 300, (16, n)))
    regs[RAND] = 0
    state = rng.integers(-32768, 32768, (n, 4))
    traces = rng.integers(0, 128, (n, 3))
    syn = rng.integers(-128, 128, (n, 1))
    s_pre, s_post = rng.random(n) < 0.5, rng.random(n) < 0.5
    h = rng.integers(0, 2**63, n, dtype=np.uint64) * np.uint64(2) + rng.integers(0, 2, n, dtype=np.uint64)
    counters = rng.integers(0, 1000, n)
    expected = [ref_run(words, section, len(words), regs[:, i].tolist(), state[i].tolist(), traces[i].tolist(),
                        syn[i].tolist(), bool(s_pre[i]), bool(s_post[i]), int(h[i]), int(counters[i]), rounding)
                for i in range(n)]
    res = execute(words, section, regs, state=state, traces=traces, synapse=syn, s_pre=s_pre, s_post=s_post,
                  h=h, counters=counters, rounding=rounding)
    for i, (r, s, t, y, fired, nxt, count) in enumerate(expected):
        assert regs[:, i].tolist() == r, (i, disassemble(words))
        assert state[i].tolist() == s and traces[i].tolist() == t and syn[i].tolist() == y
        assert bool(res.fired[i]) == fired and int(counters[i]) == nxt and int(res.instructions[i]) == count


def run_neuron(text, **regvals):
    prog = assemble("NPC\n" + text)
    n = max(np.size(v) for v in regvals.values()) if regvals else 1
    regs = np.zeros((16, n), dtype=np.int64)
    for name, v in regvals.items():
        regs[Reg[name]] = v
    return regs, execute(prog, Section.NEURON, regs)


def test_saturating_arithmetic():
    regs, _ = run_neuron("ADD R2, R0, R1\nSUB R3, VT, R1\nSFTI VTH, R0, 15\nADDI I, VT, -1\nUPTVT 16",
                         R0=[32767, -32768, 100], R1=[1, 1, -5], VT=[-32768, -32768, 7])
    assert regs[Reg.R2].tolist() == [32767, -32767, 95]
    assert regs[Reg.R3].tolist() == [-32768, -32768, 12]
    assert regs[Reg.VTH].tolist() == [32767, -32768, 32767]
    assert regs[Reg.I].tolist() == [-32768, -32768, 6]
    # UPTVT 16: VT + I without leak, saturated
    assert regs[Reg.VT].tolist() == [-32768, -32768, 13]


def test_memory_stores_clamp():
    prog = assemble("LSSYN [0], R0\nLSLS [1], R0\nLSIS [2], R0\nLSIS R1, [0]\nLSLS R2, [2]")
    n = 4
    regs = np.zeros((16, n), dtype=np.int64)
    regs[Reg.R0] = [-500, -5, 100, 500]
    syn = np.zeros((n, 1), dtype=np.int64)
    traces = np.tile(np.array([0, 0, 9]), (n, 1))
    state = np.tile(np.array([11, 0, 0, 0]), (n, 1))
    execute(prog, Section.WEIGHT, regs, state=state, traces=traces, synapse=syn)
    assert syn[:, 0].tolist() == [-128, -5, 100, 127]
    assert traces[:, 1].tolist() == [0, 0, 100, 127]
    assert state[:, 2].tolist() == [-500, -5, 100, 500]
    assert regs[Reg.R1].tolist() == [11] * n and regs[Reg.R2].tolist() == [9] * n


def test_uptls_both_forms():
    # rd ← clamp(rd − shr(rd, k) + (inc if rs ≠ 0), 0, 127) and rd ← clamp(rd − shr(rd, k) + rs, 0, 127)
    regs, _ = run_neuron("UPTLS R0, SPK, 2, 100\nUPTLS R1, RWSUM, 1",
                         R0=[10, 120, 3], SPK=[0, 1, 1], R1=[10, 100, 50], RWSUM=[-20, 100, 3])
    assert regs[Reg.R0].tolist() == [10 - 3, 127, 3 - 1 + 100]
    assert regs[Reg.R1].tolist() == [0, 127, 50 - 25 + 3]


def test_uptsyn_products():
    prog = assemble("UPTSYN PRE, 2, 2\nUPTSYN POST, -3, 3\nUPTSYN PREPOST, 1, 0\nUPTSYN MOD, 3, 4")
    regs = np.zeros((16, 3), dtype=np.int64)
    regs[Reg.TPRE], regs[Reg.TPOST], regs[Reg.TREW] = 100, 50, 64
    regs[Reg.WGT] = [0, 10, 120]
    execute(prog, Section.WEIGHT, regs, s_pre=[True, False, False], s_post=[True, False, False],
            rounding="floor")
    # floor(x y / 128) = floor(5000 / 128) = 39; floor(39 r / 128) = floor(2496 / 128) = 19
    # lane 0: PRE 2*100 >> 2 = 50; POST floor(-3*50 / 8) = -19; PREPOST 39; MOD floor(3*19 / 16) = 3
    # lane 1: no spike flags: 10 + 39 + 3; lane 2: 120 + 39 saturates at 127, then + 3 stays 127
    assert regs[Reg.WGT].tolist() == [50 - 19 + 39 + 3, 52, 127]

    prog = assemble("UPTSYN POST, -20, 3\nUPTSYN MOD, -100, 4\nUPTSYN PREPOST, -1, 1")
    regs = np.zeros((16, 3), dtype=np.int64)
    regs[Reg.TPRE], regs[Reg.TPOST], regs[Reg.TREW] = 40, 30, 100
    regs[Reg.WGT] = [0, 0, -100]
    execute(prog, Section.WEIGHT, regs, s_pre=[True, False, False], rounding="nearest")
    # floor(40*30 / 128) = 9; floor(9*100 / 128) = 7
    # POST: floor((-600 + 4) / 8) = -75; MOD: floor((-700 + 8) / 16) = -44; PREPOST: floor((-9 + 1) / 2) = -4
    # lane 2: -100 - 44 = -144 saturates at -128, then -4 gives -128 - 4 = -132 -> -128
    assert regs[Reg.WGT].tolist() == [-75 - 44 - 4, -48, -128]

    regs[Reg.WGT] = 0
    regs[Reg.TPRE] = [-3, 3, 0]
    regs[Reg.TPOST] = 5
    execute(assemble("UPTSYN PREPOST, 1, 0"), Section.WEIGHT, regs, rounding="nearest")
    # the product is a floor division whatever the rounding mode: -15 // 128 = -1, 15 // 128 = 0
    assert regs[Reg.WGT].tolist() == [-1, 0, 0]


def test_gsprs():
    regs, res = run_neuron("GSPRS", VT=[9, 10, 11, -5], VTH=[10, 10, 10, -6], RES=[-3, -3, 0, 4],
                           SPK=[1, 1, 1, 1])
    assert res.fired.tolist() == [False, True, True, True]
    assert regs[Reg.VT].tolist() == [9, -3, 0, 4]
    assert regs[Reg.SPK].tolist() == [0, 1, 1, 1]
    regs, res = run_neuron("GSPRS\nADDI VT, VT, 1\nGSPRS", VT=[5, 9, 10], VTH=10)
    assert res.fired.tolist() == [False, True, True] and regs[Reg.SPK].tolist() == [0, 1, 0]
    assert regs[Reg.VT].tolist() == [6, 0, 1]


def test_branches_diverge_and_loop():
    # R1 ← max(WGTSUM, 0) by a branch; then a loop adds 3 to R2 WGTSUM times.
    text = """
        CMP WGTSUM, R0
        JC LE, neg
        ADD R1, WGTSUM, R0
        JC AL, loop
    neg: SUB R1, R0, R0
    loop: CMP R3, R1
        JC GE, done
        ADDI R2, R2, 3
        ADDI R3, R3, 1
        JC AL, loop
    done: NPC
    """
    wgtsum = np.array([-4, 0, 1, 5, 30])
    regs, res = run_neuron(text, WGTSUM=wgtsum)
    m = np.maximum(wgtsum, 0)
    assert regs[Reg.R1].tolist() == m.tolist()
    assert regs[Reg.R2].tolist() == (3 * m).tolist()
    # 3 or 4 words before the loop, 5 per iteration, then CMP + JC
    assert res.instructions.tolist() == (np.where(wgtsum > 0, 4, 3) + 5 * m + 2).tolist()
    flags = {"EQ": [0, 1, 0], "NE": [1, 0, 1], "LT": [1, 0, 0], "GE": [0, 1, 1], "GT": [0, 0, 1],
             "LE": [1, 1, 0], "AL": [1, 1, 1]}
    for cond, taken in flags.items():
        regs, _ = run_neuron(f"CMP R0, R1\nJC {cond}, +1\nADDI R2, R2, 1", R0=[1, 2, 3], R1=2)
        assert regs[Reg.R2].tolist() == [1 - t for t in taken], cond


def test_infinite_loop_is_an_error():
    regs = np.zeros((16, 2), dtype=np.int64)
    regs[Reg.WGTSUM] = [0, 1]
    with pytest.raises(ISAError, match=r"word 2 .*lane 1 did not finish the neuron section within max_steps = 50"):
        execute(assemble("NPC\nCMP WGTSUM, R0\nJC GT, -1"), Section.NEURON, regs, max_steps=50)
    # a loop of 3 words run WGTSUM times: exactly max_steps instructions are allowed
    loop = assemble("NPC\nADDI R0, R0, 1\nCMP R0, WGTSUM\nJC LT, -3")
    regs = np.zeros((16, 2), dtype=np.int64)
    regs[Reg.WGTSUM] = [3, 4]
    assert execute(loop, Section.NEURON, regs.copy(), max_steps=12).instructions.tolist() == [9, 12]
    with pytest.raises(ISAError, match="lane 1 did not finish"):
        execute(loop, Section.NEURON, regs.copy(), max_steps=11)


def test_execution_errors_name_the_word():
    regs = np.zeros((16, 2), dtype=np.int64)
    with pytest.raises(ISAError, match=r"word 1 .*state slot 4 out of range \(4 slots\)"):
        execute(assemble("NPC\nLSIS R0, [4]"), 1, regs, state=np.zeros((2, 4), dtype=np.int64))
    with pytest.raises(ISAError, match="needs state memory"):
        execute(assemble("NPC\nLSIS R0, [0]"), 1, regs)
    with pytest.raises(ISAError, match=r"word 0 .*synapse field 1 does not exist"):
        execute(assemble("LSSYN R0, [1]"), 0, regs, synapse=np.zeros((2, 1), dtype=np.int64))
    with pytest.raises(ISAError, match=r"word 2 .*no unit keys h"):
        execute(assemble("NPC\nNPC\nADD R0, RAND, R0"), 2, regs)
    with pytest.raises(ISAError, match="no unit keys h"):
        execute(assemble("NPC\nSFTI R0, R0, -1"), 1, regs, rounding="stochastic")
    with pytest.raises(TypeError, match="regs"):
        execute(assemble("NPC"), 1, regs.astype(np.int32))
    with pytest.raises(ValueError, match="rounding"):
        execute(assemble("NPC"), 1, regs, rounding="up")


def test_rand_stream_continues_across_sections():
    prog = assemble("NPC\nADD R0, RAND, R3\nSUB R1, RAND, RAND\nNPC\nSFTI R2, RAND, 0")
    n = 5
    h = isa.unit_key(3, 7, np.arange(n), 11)
    regs = np.zeros((16, n), dtype=np.int64)
    counters = np.zeros(n, dtype=np.int64)
    execute(prog, Section.NEURON, regs, h=h, counters=counters)
    execute(prog, Section.TRACE, regs, h=h, counters=counters)
    for i in range(n):
        u = [py_mix((int(h[i]) + k) & M64) >> 48 for k in range(4)]
        assert regs[Reg.R0, i] == u[0] >> 1
        assert regs[Reg.R1, i] == (u[1] >> 1) - (u[2] >> 1)    # rs is drawn before rt
        assert regs[Reg.R2, i] == u[3] >> 1
    assert counters.tolist() == [4] * n
    assert regs[Reg.RAND].tolist() == [0] * n


# --------------------------------------------------------------------------- load-time checks

@pytest.mark.parametrize("rounding", ["floor", "nearest"])
def test_rest_stability(rounding):
    def stable(neuron, trace=""):
        return isa.is_rest_stable(build_program(neuron=neuron, trace=trace), rounding=rounding)

    lif = isa.lif_section(threshold=100, leak_shift=4)
    assert stable(lif, isa.trace_section(x=(4, 30), y=(5, 20), r=3))
    assert stable(isa.lif_section(threshold=100, leak_shift=4, syn_shift=2, reset=-20))
    assert stable(isa.relay_section())
    assert stable("")
    assert not stable(isa.lif_section(threshold=100, leak_shift=4, bias=1))
    assert not stable(isa.lif_section(threshold=100, leak_shift=4, bias=-1))
    assert not stable(isa.lif_section(threshold=0, leak_shift=4))           # fires at rest
    assert not stable(lif + "    ADD R0, RAND, R1\n")                       # draws
    assert not stable(lif, "    ADDI R0, R0, 1\n    LSLS [1], R0\n")         # writes a trace
    assert not stable(lif, "    ADDI R0, R0, 1\n    LSIS [3], R0\n")         # writes state
    assert not stable(lif, "    UPTLS TREW, VTH, 0, 1\n    LSLS [2], TREW\n")
    assert not isa.is_rest_stable(build_program(neuron=lif), rounding="stochastic")   # leak draws
    assert isa.is_rest_stable(build_program(neuron=isa.lif_section(threshold=9, leak_shift=16)),
                              rounding="stochastic")


@pytest.mark.parametrize("rounding", ["floor", "nearest"])
def test_weight_inertness(rounding):
    def inert(weight, **kw):
        return isa.is_weight_inert(build_program(weight=weight), rounding=rounding, **kw)

    assert inert("")
    assert inert(isa.stdp_section(a_pre=40, a_post=-50, shift=3))
    assert inert(isa.stdp_section(a_pre=127, a_post=-128, shift=0), weight_bits=10)
    assert inert(isa.three_factor_section(a_mod=60, shift=4))
    assert inert(isa.three_factor_section(a_mod=-60, shift=4, a_pre=3, a_post=-3))
    assert not inert("    LSSYN WGT, [0]\n    ADDI WGT, WGT, 1\n    LSSYN [0], WGT\n")
    assert not inert("    LSSYN WGT, [0]\n    SFTI WGT, WGT, -1\n    LSSYN [0], WGT\n")
    assert not inert("    ADD R0, RAND, R0\n")
    assert not isa.is_weight_inert(build_program(weight=isa.stdp_section(a_pre=1, a_post=-1, shift=2)),
                                   rounding="stochastic")
    assert isa.is_weight_inert(build_program(weight=isa.stdp_section(a_pre=1, a_post=-1, shift=0)),
                               rounding="stochastic")


# --------------------------------------------------------------------------- ready-made sections

def simulate_lif(prog, wgtsum, ticks, rounding, n_slots=4):
    state = np.zeros((1, n_slots), dtype=np.int64)
    spikes = []
    for t in range(ticks):
        regs = np.zeros((16, 1), dtype=np.int64)
        regs[Reg.WGTSUM] = wgtsum
        if execute(prog, Section.NEURON, regs, state=state, rounding=rounding).fired[0]:
            spikes.append(t)
    return spikes, state[0]


@pytest.mark.parametrize("rounding", ["floor", "nearest"])
@pytest.mark.parametrize("w, threshold, leak, reset, bias", [
    (40, 200, 3, 0, 0), (40, 200, 3, -50, 5), (7, 300, 16, 10, 0), (100, 30000, 1, 0, 0), (-20, 10, 2, 0, 25)])
def test_lif_spike_times(rounding, w, threshold, leak, reset, bias):
    prog = build_program(neuron=isa.lif_section(threshold=threshold, leak_shift=leak, reset=reset, bias=bias))
    v, expected = 0, []
    for t in range(120):
        v = py_sat(v - (0 if leak == 16 else py_shr(v, leak, rounding)) + w + bias, 16)
        if v >= threshold:
            expected.append(t)
            v = reset
    spikes, state = simulate_lif(prog, w, 120, rounding)
    assert spikes == expected
    assert state[0] == v


@pytest.mark.parametrize("rounding", ["floor", "nearest"])
def test_lif_with_synaptic_current(rounding):
    prog = build_program(neuron=isa.lif_section(threshold=500, leak_shift=2, syn_shift=3, reset=-10, bias=-2))
    v = i = 0
    expected = []
    for t in range(150):
        i = py_sat(i - py_shr(i, 3, rounding) + 20, 16)
        v = py_sat(v - py_shr(v, 2, rounding) + py_sat(i - 2, 16), 16)
        if v >= 500:
            expected.append(t)
            v = -10
    spikes, state = simulate_lif(prog, 20, 150, rounding)
    assert expected and spikes == expected
    assert state[:2].tolist() == [v, i]


def test_section_parameters_are_checked():
    with pytest.raises(ValueError, match="threshold = 40000"):
        isa.lif_section(threshold=40000, leak_shift=3)
    with pytest.raises(ValueError, match="syn_shift = 16"):
        isa.lif_section(threshold=4, leak_shift=3, syn_shift=16)
    with pytest.raises(ValueError, match="bias"):
        isa.lif_section(threshold=4, leak_shift=3, bias=-32769)
    with pytest.raises(TypeError, match="reset"):
        isa.lif_section(threshold=4, leak_shift=3, reset=1.5)
    with pytest.raises(ValueError, match=r"x\[1\] \(inc\) = 128"):
        isa.trace_section(x=(3, 128))
    with pytest.raises(ValueError, match="y must be a pair"):
        isa.trace_section(y=3)
    with pytest.raises(ValueError, match="r = 16"):
        isa.trace_section(r=16)
    with pytest.raises(ValueError, match="a_post = -129"):
        isa.stdp_section(a_pre=1, a_post=-129, shift=2)
    with pytest.raises(ValueError, match="shift = 16"):
        isa.three_factor_section(a_mod=1, shift=16)


def test_trace_section_dynamics():
    prog = build_program(neuron=isa.relay_section(), trace=isa.trace_section(x=(2, 50), y=(3, 40), r=1))
    traces = np.zeros((1, 3), dtype=np.int64)
    x = y = r = 0
    for t, (wgt, rw) in enumerate([(1, 0), (0, 30), (1, 200), (0, -5), (0, 0), (1, 0)]):
        regs = np.zeros((16, 1), dtype=np.int64)
        regs[Reg.WGTSUM], regs[Reg.RWSUM] = wgt, rw
        execute(prog, Section.NEURON, regs, traces=traces)
        execute(prog, Section.TRACE, regs, traces=traces)
        s = wgt > 0
        x = max(0, min(127, x - py_shr(x, 2, "nearest") + (50 if s else 0)))
        y = max(0, min(127, y - py_shr(y, 3, "nearest") + (40 if s else 0)))
        r = max(0, min(127, r - py_shr(r, 1, "nearest") + rw))
        assert traces[0].tolist() == [x, y, r], t
    assert build_program(trace=isa.trace_section(y=(1, 1))).instructions[2:] == assemble(
        "LSLS TPOST, [1]\nUPTLS TPOST, SPK, 1, 1\nLSLS [1], TPOST", max_words=None).instructions


def test_learning_sections_update_weights():
    x, y, r = [0, 90, 40, 127], [80, 0, 60, 127], [0, 100, 127, 127]
    s_pre, s_post = [True, True, False, True], [True, False, True, True]

    def stdp(k):
        return [py_shr(20 * x[k] * s_post[k], 4, "nearest"), py_shr(-30 * y[k] * s_pre[k], 4, "nearest")]

    def three_factor(k):
        mod = (x[k] * y[k] // 128) * r[k] // 128
        return [py_shr(50 * mod, 3, "nearest"), py_shr(-7 * y[k] * s_pre[k], 3, "nearest")]

    for section, terms in [(isa.stdp_section(a_pre=20, a_post=-30, shift=4), stdp),
                           (isa.three_factor_section(a_mod=50, shift=3, a_post=-7), three_factor)]:
        syn = np.array([[-100], [0], [10], [100]], dtype=np.int64)
        before = syn[:, 0].tolist()
        regs = np.zeros((16, 4), dtype=np.int64)
        regs[Reg.TPRE], regs[Reg.TPOST], regs[Reg.TREW] = x, y, r
        execute(build_program(weight=section), Section.WEIGHT, regs, synapse=syn, s_pre=s_pre, s_post=s_post)
        for k in range(4):
            want = before[k]
            for term in terms(k):
                want = py_sat(want + term, 8)    # sat_w after every UPTSYN
            assert syn[k, 0] == want, (section, k)
        assert syn[:, 0].tolist() != before
