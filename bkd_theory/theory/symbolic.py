"""sympy derivations behind T1-T4 (DESIGN 2.7) and the Dirichlet identity E8.

One-step recursions. Write r = ||theta_k - theta*||^2, D = F(theta_k) - F*, g the stochastic
gradient (E g = grad F), and take expectations over the step's sample.
- T1/T3: r' = r - 2 gamma <g, theta_k - theta*> + gamma^2 ||g||^2. Strong quasi-convexity gives
  <grad F, theta - theta*> >= D + mu r / 2; the second moment is bounded by E||g||^2 <= 2 calL D
  (interpolation) or <= 4 calL D + 2 sigma^2 (in general).
- T2/T4: the descent lemma D' <= D - gamma <grad F, g> + L gamma^2 ||g||^2 / 2, with PL
  ||grad F||^2 >= 2 mu D and the same second-moment bounds.
Each substitution replaces a quantity by a bound in the direction allowed by the sign of its
coefficient. The result is affine, E r' <= c_r r + c_D D + c_0 (or E D' <= rho D + c_0); the
step-size condition is c_D <= 0 (T1/T3), or rho <= 1 - gamma mu (T2/T4); the neighborhood is
c_0 / (1 - rate) and the unrolled bound is rate^k x0 + c_0 (1 - rate^k) / (1 - rate).
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

gamma, mu, L, calL, sigma2 = sp.symbols("gamma mu L calL sigma2", positive=True)
r, D, G2, k, x0 = sp.symbols("r D G2 k x0", nonnegative=True)  # G2 = ||grad F||^2


@dataclass(frozen=True)
class Recursion:
    """A derived one-step recursion and what follows from it (all sympy expressions).

    Attributes:
        theorem: "T1".."T4".
        one_step: the upper bound on E[next] in terms of r or D (and D for T1/T3).
        rate: the coefficient of the tracked quantity (r or D) in `one_step`.
        drop: the coefficient that must be <= 0 to drop it (D in T1/T3); None for T2/T4.
        additive: the constant term (0 under interpolation).
        gamma_max: the largest step size for which the theorem's rate 1 - gamma mu holds.
        stated_rate: 1 - gamma mu (E13-E16).
        neighborhood: additive / (1 - stated_rate) (E15, E16), 0 for T1/T2.
        sharp_neighborhood: additive / (1 - rate) with the recursion's own rate.
        bound: stated_rate^k x0 + neighborhood (the theorem's form).
        unrolled: rate^k x0 + additive (1 - rate^k) / (1 - rate) (the recursion's own bound).
    """

    theorem: str
    one_step: sp.Expr
    rate: sp.Expr
    drop: sp.Expr | None
    additive: sp.Expr
    gamma_max: sp.Expr
    stated_rate: sp.Expr
    neighborhood: sp.Expr
    sharp_neighborhood: sp.Expr
    bound: sp.Expr
    unrolled: sp.Expr


def _largest_gamma(condition: sp.Expr) -> sp.Expr:
    """Sup of the set {gamma > 0 : condition(gamma) <= 0} for a condition that is <= 0 near gamma = 0."""
    sols = sp.solve(sp.Eq(sp.factor(condition), 0), gamma)
    pos = [s for s in sols if s.is_positive]
    if len(pos) != 1:
        raise ValueError(f"expected one positive root of {condition}, got {sols}")
    return sp.simplify(pos[0])


def distance_recursion(interpolation: bool) -> Recursion:
    """T1 (interpolation) or T3 (general): expand ||theta_{k+1} - theta*||^2 and bound it."""
    inner = sp.Symbol("inner")  # E <g, theta - theta*> = <grad F, theta - theta*>
    m2 = sp.Symbol("m2")  # E ||g||^2
    expansion = r - 2 * gamma * inner + gamma**2 * m2
    # coefficient of inner is -2 gamma < 0: use the lower bound from strong quasi-convexity
    step = expansion.subs(inner, D + mu * r / 2)
    # coefficient of m2 is gamma^2 > 0: use the upper bound on the second moment
    step = sp.expand(step.subs(m2, 2 * calL * D if interpolation else 4 * calL * D + 2 * sigma2))
    rate, drop = step.coeff(r), step.coeff(D)
    additive = sp.simplify(step - rate * r - drop * D)
    gmax = _largest_gamma(drop)
    stated = 1 - gamma * mu
    neigh = sp.simplify(additive / (1 - stated))
    name = "T1" if interpolation else "T3"
    return Recursion(name, step, sp.simplify(rate), sp.factor(drop), additive, gmax, stated, neigh,
                     sp.simplify(additive / (1 - rate)), stated**k * x0 + neigh,
                     rate**k * x0 + sp.simplify(additive / (1 - rate)) * (1 - rate**k))


def function_recursion(interpolation: bool) -> Recursion:
    """T2 (interpolation) or T4 (general): the L-smooth descent lemma with PL."""
    m2 = sp.Symbol("m2")
    lemma = D - gamma * G2 + L * gamma**2 * m2 / 2  # E[F(theta - gamma g)] - F*, using E g = grad F
    step = lemma.subs(m2, 2 * calL * D if interpolation else 4 * calL * D + 2 * sigma2)
    step = sp.expand(step.subs(G2, 2 * mu * D))  # coefficient of G2 is -gamma < 0: PL lower bound
    rate = sp.simplify(step.coeff(D))
    additive = sp.simplify(step - step.coeff(D) * D)
    stated = 1 - gamma * mu
    gmax = _largest_gamma(rate - stated)  # rate <= 1 - gamma mu
    neigh = sp.simplify(additive / (1 - stated))
    name = "T2" if interpolation else "T4"
    return Recursion(name, step, rate, None, additive, gmax, stated, neigh, sp.simplify(additive / (1 - rate)),
                     stated**k * x0 + neigh, rate**k * x0 + sp.simplify(additive / (1 - rate)) * (1 - rate**k))


def recursions() -> dict[str, Recursion]:
    """All four derivations, keyed "T1".."T4"."""
    return {"T1": distance_recursion(True), "T2": function_recursion(True),
            "T3": distance_recursion(False), "T4": function_recursion(False)}


def design_statements() -> dict[str, dict[str, sp.Expr]]:
    """E13-E16 and their step-size ranges as written in DESIGN 2.7, for comparison."""
    return {
        "T1": {"gamma_max": 1 / calL, "neighborhood": sp.Integer(0)},
        "T2": {"gamma_max": mu / (L * calL), "neighborhood": sp.Integer(0)},
        "T3": {"gamma_max": 1 / (2 * calL), "neighborhood": 2 * gamma * sigma2 / mu},
        "T4": {"gamma_max": mu / (2 * L * calL), "neighborhood": L * gamma * sigma2 / mu},
    }


def _nonpositive_on_range(expr: sp.Expr, gmax: sp.Expr) -> bool:
    """True if expr(gamma) <= 0 for every gamma in (0, gmax]: substitute gamma = gmax / (1 + u), u >= 0."""
    u = sp.Symbol("u", nonnegative=True)
    return bool(sp.factor(sp.simplify(expr.subs(gamma, gmax / (1 + u)))).is_nonpositive)


def compare_with_design() -> dict[str, dict[str, bool]]:
    """For each theorem: does the derived step-size range / neighborhood / rate equal DESIGN's?"""
    out = {}
    design = design_statements()
    for name, rec in recursions().items():
        out[name] = {
            "gamma_max": sp.simplify(rec.gamma_max - design[name]["gamma_max"]) == 0,
            "neighborhood": sp.simplify(rec.neighborhood - design[name]["neighborhood"]) == 0,
            "rate_is_stated": sp.simplify(rec.rate - rec.stated_rate) == 0,
            "rate_within_stated_on_range": _nonpositive_on_range(rec.rate - rec.stated_rate, rec.gamma_max),
        }
    return out


# ------------------------------------------------------------------ E8
def dirichlet_moments(K: int = 3) -> tuple[list[sp.Symbol], sp.Symbol, sp.Matrix, sp.Matrix]:
    """Mean and covariance of Dir(alpha p) from the moments E[prod t_i^{n_i}] = B(a + n) / B(a).

    Returns:
        (p symbols with p_K = 1 - sum of the others, alpha, mean [K], covariance [K, K]), simplified.
    """
    ps = list(sp.symbols(f"p1:{K}", positive=True))
    p = ps + [1 - sum(ps)]
    alpha = sp.Symbol("alpha", positive=True)
    a = [alpha * pi for pi in p]
    a0 = sum(a)

    def moment(n: list[int]) -> sp.Expr:
        num = sp.Mul(*[sp.gamma(ai + ni) / sp.gamma(ai) for ai, ni in zip(a, n)])
        return sp.gammasimp(num * sp.gamma(a0) / sp.gamma(a0 + sum(n)))

    unit = [[int(i == j) for j in range(K)] for i in range(K)]
    mean = sp.Matrix([sp.simplify(moment(unit[i])) for i in range(K)])
    cov = sp.zeros(K, K)
    for i in range(K):
        for j in range(K):
            n = [unit[i][m] + unit[j][m] for m in range(K)]
            cov[i, j] = sp.factor(sp.simplify(moment(n) - mean[i] * mean[j]))
    return p, alpha, mean, cov


def dirichlet_identity(K: int = 3) -> dict[str, sp.Expr]:
    """E8 for K classes: Cov_dir - (diag p - p p^T)/(1 + alpha) and the sigma^2 ratio, symbolically.

    With a generic G `[P, K]` (entries g_ij, P = 2) tr(G Cov_dir G^T) - tr(G C_y G^T)/(1 + alpha) is
    identically 0, so sigma_dirichlet^2 = sigma_onehot^2 / (1 + alpha) for every student.

    Returns:
        {"cov_residual": the [K, K] residual matrix (all zeros), "sigma2_residual": a scalar (0),
        "mean_residual": mean - p (zeros)}.
    """
    p, alpha, mean, cov = dirichlet_moments(K)
    Cy = sp.diag(*p) - sp.Matrix(p) * sp.Matrix(p).T
    resid = (cov - Cy / (1 + alpha)).applyfunc(sp.simplify)
    G = sp.Matrix(2, K, lambda i, j: sp.Symbol(f"g{i}{j}"))
    s2 = sp.simplify((G * cov * G.T).trace() - (G * Cy * G.T).trace() / (1 + alpha))
    return {"cov_residual": resid, "sigma2_residual": s2, "mean_residual": (mean - sp.Matrix(p)).applyfunc(sp.simplify)}


def dirichlet_moment_by_integration(a: tuple[int, int, int] = (2, 4, 3)) -> dict[str, sp.Expr]:
    """Check the moment formula for K = 3 by exact integration over the simplex (integer a).

    Returns {"E[t1 t2]": (integral, formula)} and the same for E[t1^2], as exact rationals.
    """
    t1, t2 = sp.symbols("t1 t2", nonnegative=True)
    a1, a2, a3 = (sp.Integer(v) for v in a)
    dens = t1 ** (a1 - 1) * t2 ** (a2 - 1) * (1 - t1 - t2) ** (a3 - 1)

    def integral(f: sp.Expr) -> sp.Expr:
        return sp.integrate(sp.integrate(f * dens, (t2, 0, 1 - t1)), (t1, 0, 1))

    Z = integral(sp.Integer(1))
    s = a1 + a2 + a3
    return {"E[t1 t2]": (integral(t1 * t2) / Z, a1 * a2 / (s * (s + 1))),
            "E[t1^2]": (integral(t1**2) / Z, a1 * (a1 + 1) / (s * (s + 1)))}
