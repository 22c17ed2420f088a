# cython: language_level=3
"""Random numbers of nvppl's compiled engines.

Two generators, both counter-based so that results do not depend on threads:

- the vesicle engines (simulation, particle filter) draw from xoshiro256**
  streams; each stream is named by ``(key, domain, a, b, c)`` and seeded by
  SplitMix64 over a hash of the five words (:c:func:`rng_seed`), so a task
  (a run and birth step, a particle and step) always sees the same numbers;
- the chip (its neuron cores and vesicle mailboxes) hashes counters with the
  SplitMix64 finaliser :c:func:`splitmix`, whose NumPy twin is
  :func:`nvppl.backend.isa.mix`.

Samplers: uniform on [0, 1) and (0, 1), standard normal (Box-Muller),
Gamma (Marsaglia and Tsang), Poisson (inversion below 10, PTRS above).
"""

from libc.math cimport M_PI, cos, exp, fabs, floor, lgamma, log, sin, sqrt
from libc.stdint cimport int64_t, uint64_t


cdef struct Rng:
    # xoshiro256** state: one independent stream per (domain, a, b) triple,
    # seeded by SplitMix64 from the user's 64-bit key (see rng_seed).
    uint64_t s0
    uint64_t s1
    uint64_t s2
    uint64_t s3
    double spare        # second normal deviate of the last Box-Muller pair
    int has_spare       # 1 when ``spare`` holds an unused deviate


cdef inline uint64_t mix64(uint64_t z) noexcept nogil:
    """The SplitMix64 finaliser (a bijective 64-bit mixer)."""
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL
    return z ^ (z >> 31)


cdef inline uint64_t splitmix(uint64_t z) noexcept nogil:
    """SplitMix64 of ``z``: the golden-ratio increment, then :c:func:`mix64`
    (the chip's counter hash)."""
    return mix64(z + 0x9E3779B97F4A7C15ULL)


cdef inline void rng_seed(Rng* g, uint64_t key, uint64_t d, uint64_t a, uint64_t b, uint64_t c) noexcept nogil:
    """Seed the stream (d, a, b, c) of ``key``: SplitMix64 over a hash of the five words."""
    cdef uint64_t x = mix64(key + 0x9e3779b97f4a7c15ULL)
    x = mix64(x ^ mix64(d + 0x3c6ef372fe94f82aULL))
    x = mix64(x ^ mix64(a + 0xdaa66d2c7ddf743fULL))
    x = mix64(x ^ mix64(b + 0x78dde6e5fd29f054ULL))
    x = mix64(x ^ mix64(c + 0x1715609d7c73f469ULL))
    x += 0x9e3779b97f4a7c15ULL
    g.s0 = mix64(x)
    x += 0x9e3779b97f4a7c15ULL
    g.s1 = mix64(x)
    x += 0x9e3779b97f4a7c15ULL
    g.s2 = mix64(x)
    x += 0x9e3779b97f4a7c15ULL
    g.s3 = mix64(x)
    g.has_spare = 0
    g.spare = 0.0


cdef inline uint64_t rotl(uint64_t x, int k) noexcept nogil:
    return (x << k) | (x >> (64 - k))


cdef inline uint64_t next64(Rng* g) noexcept nogil:
    cdef uint64_t result = rotl(g.s1 * 5, 7) * 9
    cdef uint64_t t = g.s1 << 17
    g.s2 ^= g.s0
    g.s3 ^= g.s1
    g.s1 ^= g.s2
    g.s0 ^= g.s3
    g.s2 ^= t
    g.s3 = rotl(g.s3, 45)
    return result


cdef inline double uniform(Rng* g) noexcept nogil:
    """U[0, 1) with 53 random bits."""
    return <double>(next64(g) >> 11) * 1.1102230246251565e-16


cdef inline double uniform_open(Rng* g) noexcept nogil:
    """U(0, 1): never 0, so its logarithm is finite."""
    return (<double>(next64(g) >> 11) + 0.5) * 1.1102230246251565e-16


cdef inline double normal(Rng* g) noexcept nogil:
    """Standard normal by the Box-Muller transform (pairs; the second is kept)."""
    cdef double r, th
    if g.has_spare:
        g.has_spare = 0
        return g.spare
    r = sqrt(-2.0 * log(uniform_open(g)))
    th = 2.0 * M_PI * uniform(g)
    g.spare = r * sin(th)
    g.has_spare = 1
    return r * cos(th)


cdef inline double gamma_draw(Rng* g, double shape, double rate) noexcept nogil:
    """Gamma(shape, rate) by Marsaglia and Tsang (2000); shape < 1 by the U^(1/a) boost."""
    cdef double boost = 1.0, d, c, x, v, u
    if shape < 1.0:
        boost = exp(log(uniform_open(g)) / shape)
        shape += 1.0
    d = shape - 1.0 / 3.0
    c = 1.0 / sqrt(9.0 * d)
    while True:
        x = normal(g)
        v = 1.0 + c * x
        if v <= 0.0:
            continue
        v = v * v * v
        u = uniform_open(g)
        if u < 1.0 - 0.0331 * x * x * x * x:
            return boost * d * v / rate
        if log(u) < 0.5 * x * x + d * (1.0 - v + log(v)):
            return boost * d * v / rate


cdef inline int64_t poisson_draw(Rng* g, double lam, double elam) noexcept nogil:
    """Poisson(lam): inversion for lam < 10 (``elam`` = exp(-lam)), otherwise the
    transformed rejection PTRS of Hörmann (1993)."""
    cdef int64_t k
    cdef double u, p, F, slam, loglam, b, a, invalpha, vr, us, U, V
    if lam <= 0.0:
        return 0
    if lam < 10.0:
        u = uniform(g)
        k = 0
        p = elam
        F = p
        while u > F and k < 200:
            k += 1
            p *= lam / k
            F += p
        return k
    slam = sqrt(lam)
    loglam = log(lam)
    b = 0.931 + 2.53 * slam
    a = -0.059 + 0.02483 * b
    invalpha = 1.1239 + 1.1328 / (b - 3.4)
    vr = 0.9277 - 3.6224 / (b - 2.0)
    while True:
        U = uniform(g) - 0.5
        V = uniform_open(g)
        us = 0.5 - fabs(U)
        k = <int64_t>floor((2.0 * a / us + b) * U + lam + 0.43)
        if us >= 0.07 and V <= vr:
            return k
        if k < 0 or (us < 0.013 and V > us):
            continue
        if log(V) + log(invalpha) - log(a / (us * us) + b) <= -lam + k * loglam - lgamma(k + 1.0):
            return k


cdef inline Rng rng_make(uint64_t key, uint64_t d, uint64_t a, uint64_t b, uint64_t c) noexcept nogil:
    """A new stream ``(d, a, b, c)`` of ``key`` (see :c:func:`rng_seed`)."""
    cdef Rng g
    rng_seed(&g, key, d, a, b, c)
    return g
