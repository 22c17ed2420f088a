"""The result of :func:`~nvppl.density.relax` and the expected FiLM release (eq. 53)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class Density(NamedTuple):
    r"""Result of :func:`~nvppl.density.relax`. Arrays have shape ``(T, n, K)`` (with
    a leading run axis when the covariates differ per run); content arrays add ``d_c``.

    Every array is an expectation over the vesicle process: exact where
    :func:`~nvppl.density.accuracy` says "exact in the mean", up to the quadrature
    error of the content classes where it says "quadrature", and a mean-field
    approximation (eq. 53) where it says so.

    Attributes
    ----------
    rho : array (..., T, n, K)
        :math:`ρ[t, i, κ]`: expected number of vesicles at node ``i`` after step
        ``t`` (eq. 46).
    expected_docks : array (..., T, n, K)
        Expected number of docks (release events) at node ``i`` during step ``t``.
    arrivals : array (..., T, n, K)
        Expected number of vesicles arriving at ``i`` by migration in step ``t``
        (before docking, absorption and decay).
    content_total : array (..., T, n, K, d_c)
        :math:`C[t, i, κ]`: expected summed content of the vesicles present (eq. 47).
    docked_content : array (..., T, n, K, d_c)
        Expected summed content of the vesicles that dock at ``i`` in step ``t``.
    """

    rho: jax.Array
    expected_docks: jax.Array
    arrivals: jax.Array
    content_total: jax.Array
    docked_content: jax.Array

    @property
    def content_mean(self):
        """Mean content per vesicle :math:`C/ρ` (``NaN`` where ``ρ = 0``)."""
        rho = self.rho[..., None]
        return jnp.where(rho > 0, self.content_total / jnp.where(rho > 0, rho, 1.0), jnp.nan)

    @property
    def n_steps(self) -> int:
        """Number of steps ``T``."""
        return int(self.rho.shape[-3])

    def expected_release(self, h, W_act, b_act):
        """Expected FiLM activation release, see :func:`expected_release`."""
        return expected_release(self, h, W_act, b_act)



def expected_release(density: Density, h, W_act, b_act):
    r"""Expected FiLM activation release per node and step (eq. 53).

    A docking vesicle of type ``κ`` with content ``c`` changes the activation
    ``h`` at its node by :math:`γ ⊙ h + β` with :math:`(γ, β) = W_{act}^κ c +
    b_{act}^κ` (eq. 21–22), and docks add (eq. 36). Because this is affine in
    ``c``, its expectation is the FiLM output driven by the expected docks
    :math:`D` and their expected summed content :math:`C^{dock}`:

    .. math::

        E[Δh_{total}(t, i)] = \sum_κ \big(W^κ_{act} C^{dock}[t,i,κ] + b^κ_{act} D[t,i,κ]\big)_γ ⊙ h
        + \big(\cdots\big)_β ,

    that is eq. 53 with the density of *docking* vesicles (release happens at
    docking, :ref:`design-model`) and mean content :math:`C^{dock}/D`. As accurate as
    the density (:func:`~nvppl.density.accuracy`): exact where it is exact in the mean.

    Parameters
    ----------
    density : Density
    h : array (H,) or broadcastable to (..., T, n, H)
        Pre-activations.
    W_act : array (K, 2H, d_c)
    b_act : array (K, 2H)

    Returns
    -------
    array (..., T, n, H)
    """
    D = density.expected_docks  # (..., T, n, K)
    C = density.docked_content  # (..., T, n, K, dc)
    gb = jnp.einsum("khd,...nkd->...nh", jnp.asarray(W_act), C) + jnp.einsum("kh,...nk->...nh",
                                                                                jnp.asarray(b_act), D)
    H = gb.shape[-1] // 2
    return gb[..., :H] * jnp.asarray(h) + gb[..., H:]


