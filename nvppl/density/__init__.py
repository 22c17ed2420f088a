r"""Density relaxation of the vesicle process (:ref:`design-density`, paper §5, eq. 46–53).

Instead of following vesicles one by one, track for every node ``i`` and type
``κ`` the expected number of vesicles :math:`ρ[t, i, κ]` present after step
``t`` (eq. 46) and their expected summed content :math:`C[t, i, κ]` (eq. 47).

Vesicles are born by Poisson emission and then move independently, so the
expected count obeys a *linear* recursion on the graph. One step (emission,
migration, docking, absorption, decay, in the order of :ref:`design-model`) reads

.. math::

    ρ_t = S_t \odot \big(T_κ^\top (ρ_{t-1} + λ_t)\big),\qquad
    S_t[i, κ] = (1 - a_i)(1 - δ_κ)\big(1 - p_{dock}[t, i, κ]\,[\text{budget}_κ = 1]\big),

the discrete-time reaction–diffusion system of eq. 48–52 written so that it is
**exact in the mean** for the process of §1.3 (births migrate in the step they
are born, as in the simulators) when no kernel depends on content. nvppl
extends it in two ways that stay exact in the mean:

* **release budgets** ``s > 1``: the mass is split by remaining budget; a dock
  moves mass one level down and depletes it from level 1;
* **countdown lifetimes**: the mass is split by age, and the age-``k`` mass
  survives expiry with probability :math:`1 - h_k` (:mod:`nvppl.kernels.decay`).

When migration or docking depends on content (content tilt ``Q`` or docking
weights ``w_c``), a vesicle's fate depends on its own content, which is fixed
at birth. The recursion evaluated at the mean content :math:`C/ρ` (eq. 53) is
then only a mean-field approximation, and a poor one: docking that favours some
contents removes those first, which the mean cannot see. :func:`relax` instead
splits the population into content classes (:mod:`nvppl.density.classes`):
quadrature nodes of the birth distribution, each class relaxed exactly with its
own docking probabilities and migration kernel. The result is exact in the mean
up to the quadrature error (relative errors of about 1e-5 to 1e-3 with the
default 48 nodes for strongly selective kernels; :mod:`nvppl.density.classes`
gives the conditions). :func:`accuracy` states which case applies to a model, and
:func:`exact_in_mean` whether it is exact without quadrature.

Births are Poisson and vesicles move independently, so the count at one
``(t, i, κ)`` is exactly Poisson with mean ``E[N]``, and the number of docks is
Poisson too (one-time marginals; counts at different times are correlated).
Where the density is exact in the mean these marginals are ``Poisson(ρ)`` and
``Poisson(expected_docks)`` exactly; :func:`composite_log_likelihood` uses them.

Cost: one step is a gather over the candidate lists (``O(|E|·K)``, times the
number of budget levels, times the horizon for countdown lifetimes, times the
number of content classes); no dense ``n × n`` matrix is formed. The transposed
migration ``T_κ^\top x`` is a sum over each node's incoming edges, with a
hand-written adjoint (a gather along the candidate lists), so that reverse-mode
gradients need no scatter. Content-free geometric models with budgets of 1 or
infinite run the compiled recursion of :mod:`nvppl._engine.relax`
(:func:`fast_path`).
"""

from __future__ import annotations

from .core import accuracy, exact_in_mean, fast_path, relax, relaxer
from .likelihood import composite_log_likelihood, detected_mean, poisson_mix, predicted_mean
from .result import Density, expected_release

__all__ = ["Density", "relax", "accuracy", "exact_in_mean", "expected_release", "composite_log_likelihood",
           "predicted_mean", "detected_mean"]
