"""The torch side of the trained teachers: stacked ReLU MLPs and a last-layer Laplace posterior.

Stacked MLP. Layer l holds W `[M, out, in]` and b `[M, out]`: M independent networks (ensemble
members) in one tensor, trained together by Adam on the sum of their batch-mean losses (E1; Adam
and coupled weight decay are element-wise, so this equals training them one at a time).

Last-layer Laplace (MacKay 1992; Daxberger et al. 2021 "Laplace Redux"). The hidden layers are
frozen at the MAP; only the last layer is random. With penultimate features phi(x) `[H]` and the
augmented phit = (phi, 1) (bias LAST, as in the contract's linear student), the logits are
f = Wt phit with Wt = [W | b] `[K, H+1]`, and theta = Wt.reshape(-1) (row-major, P = K (H+1)):

    precision  = GGN + delta I,      GGN = sum_i J_i^T Lambda_i J_i,   Lambda_i = diag(q_i) - q_i q_i^T
    log p(D | delta) ~= -NLL(theta_MAP) - delta/2 ||theta_MAP||^2 + P/2 log delta
                        - 1/2 sum_j log(lambda_j + delta)

where J_i = d f(x_i) / d theta `[K, P]` (`torch.func.vmap(jacrev)`), NLL is the SUM of the
cross-entropy over the n training points (a likelihood, not the mean objective of losses.py), and
lambda_j are the eigenvalues of the GGN. The maximiser satisfies MacKay's fixed point
delta ||theta||^2 = sum_j lambda_j / (lambda_j + delta) (the effective number of parameters).
Predictive: the multiclass probit (mean-field) approximation p ~= softmax(kappa * f_mu),
kappa_k = (1 + pi/8 Var f_k)^(-1/2), or Monte Carlo over last-layer weight draws.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.optimize import minimize_scalar
from torch.func import jacrev, vmap

from synthetic import validation

from .. import losses

_F64 = torch.float64


# ----------------------------------------------------------------------------------------------
# Stacked MLP


def forward(layers: list[tuple[torch.Tensor, torch.Tensor]], x: torch.Tensor,
            masks: list[torch.Tensor] | None = None, *, features: bool = False) -> torch.Tensor:
    """Logits `[M, B, K]` (or last hidden activations with `features`) for inputs `[M or 1, B, d]`.

    `masks[l]` (already scaled by 1/(1-p)) multiplies hidden layer l's activations; it broadcasts
    against `[M, B, width]`, e.g. `[S, 1, width]` gives S fixed dropout sub-networks.
    """
    h = x
    for i, (W, b) in enumerate(layers[:-1]):
        h = torch.relu(h @ W.transpose(-1, -2) + b.unsqueeze(-2))
        if masks is not None:
            h = h * masks[i]
    if features:
        return h
    W, b = layers[-1]
    return h @ W.transpose(-1, -2) + b.unsqueeze(-2)


def dropout_masks(widths: tuple[int, ...], shape: tuple[int, ...], p: float,
                  gens: list[torch.Generator]) -> list[torch.Tensor]:
    """Inverted-dropout masks `[M, *shape, width]`, member m drawn from its own generator."""
    return [torch.stack([(torch.rand(*shape, w, generator=g, dtype=_F64) >= p).to(_F64) / (1.0 - p)
                         for g in gens]) for w in widths]


@dataclass(frozen=True)
class StackedMLP:
    """Trained networks with their input standardisation, as a fixed function of raw x.

    Attributes:
        layers: [(W `[M, out, in]`, b `[M, out]`)] float64. shift, scale: x -> (x - shift) / scale `[d]`.
        masks: None, or fixed dropout masks `[S, 1, width]` per hidden layer (MC dropout, M = 1).
    """

    layers: list
    shift: np.ndarray
    scale: np.ndarray
    masks: list | None = None

    def _inputs(self, x: np.ndarray) -> torch.Tensor:
        return torch.as_tensor((x - self.shift) / self.scale, dtype=_F64).unsqueeze(0)

    def logits(self, x: np.ndarray) -> torch.Tensor:
        """Per-network logits `[M or S, N, K]`."""
        with torch.no_grad():
            return forward(self.layers, self._inputs(x), self.masks)

    def features(self, x: np.ndarray) -> torch.Tensor:
        """Last hidden activations of member 0 without dropout `[N, H]` (the Laplace features)."""
        with torch.no_grad():
            return forward([(W[:1], b[:1]) for W, b in self.layers], self._inputs(x), features=True)[0]

    def log_proba(self, x: np.ndarray) -> torch.Tensor:
        """log of the mean over networks of softmax(logits) `[N, K]`."""
        log_q = torch.log_softmax(self.logits(x), dim=-1)
        return torch.logsumexp(log_q, dim=0) - math.log(log_q.shape[0])


def train_mlp(x: torch.Tensor, y: torch.Tensor, K: int, *, widths: tuple[int, ...], epochs: int, lr: float,
              weight_decay: float, batch_size: int, p_drop: float, gens: list[np.random.Generator],
              tgens: list[torch.Generator], loss: str = "ce") -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Train M = len(gens) ReLU MLPs by Adam on the cross-entropy with labels y; return their layers.

    Member m draws its init (torch.nn.Linear's U(+-1/sqrt(fan_in))) and dropout masks from
    `tgens[m]` and its per-epoch batch order from `gens[m]` only. Fixed epochs, no early stopping.

    Args:
        x: inputs `[n, d]` float64. y: labels `[n]` int64. K: number of classes.
        p_drop: dropout after every hidden layer during training (0 = none).
        loss: "ce" (E1 with one-hot labels) or "brier" (the batch mean of ||softmax(f) - e_y||^2).
    """
    validation.one_of("loss", loss, ("ce", "brier"))
    n, d = x.shape
    onehot = torch.nn.functional.one_hot(y, K).to(_F64)
    sizes = (d, *widths, K)
    layers = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        bound = 1.0 / math.sqrt(fan_in)
        W = torch.stack([(2 * torch.rand(fan_out, fan_in, generator=g, dtype=_F64) - 1) * bound for g in tgens])
        b = torch.stack([(2 * torch.rand(fan_out, generator=g, dtype=_F64) - 1) * bound for g in tgens])
        layers.append((W.requires_grad_(), b.requires_grad_()))
    opt = torch.optim.Adam([t for pair in layers for t in pair], lr=lr, weight_decay=weight_decay)
    B = min(batch_size, n)
    for _ in range(epochs):
        perm = torch.as_tensor(np.stack([g.permutation(n) for g in gens]))     # [M, n]
        for start in range(0, n, B):
            idx = perm[:, start:start + B]
            masks = dropout_masks(widths, (idx.shape[1],), p_drop, tgens) if p_drop > 0 else None
            log_q = torch.log_softmax(forward(layers, x[idx], masks), dim=-1)
            if loss == "ce":
                total = losses.batch_loss(onehot[idx], log_q).sum()  # sum over members of each member's mean
            else:
                total = ((log_q.exp() - onehot[idx]) ** 2).sum(dim=-1).mean(dim=-1).sum()
            opt.zero_grad(set_to_none=True)
            total.backward()
            opt.step()
    return [(W.detach(), b.detach()) for W, b in layers]


def fit_stacked_mlp(x: np.ndarray, y: np.ndarray, K: int, *, standardize: bool, passes: int | None = None,
                    gens: list[np.random.Generator], **train: Any) -> StackedMLP:
    """Standardise x (training mean and std), train len(gens) MLPs (`train_mlp`), wrap them.

    Member m uses only `gens[m]` (batch order) and a torch generator seeded from it (init and
    dropout), so member m is the same network whatever M is. With `passes`, S = passes dropout
    masks are drawn once from member 0's torch generator and frozen into the model (MC dropout).
    """
    tgens = [torch.Generator().manual_seed(int(g.integers(2**63 - 1))) for g in gens]
    shift, std = (x.mean(axis=0), x.std(axis=0)) if standardize else (np.zeros(x.shape[1]), np.ones(x.shape[1]))
    scale = np.where(std > 0, std, 1.0)
    layers = train_mlp(torch.as_tensor((x - shift) / scale, dtype=_F64), torch.as_tensor(y), K,
                       gens=gens, tgens=tgens, **train)
    masks = None
    if passes is not None:
        masks = [m[0] for m in dropout_masks(train["widths"], (passes, 1), train["p_drop"], tgens[:1])]
    return StackedMLP(layers, shift, scale, masks)


# ----------------------------------------------------------------------------------------------
# Last-layer Laplace


def check_bounds(bounds: tuple[float, float]) -> tuple[float, float]:
    """Return the prior-precision search range (lo, hi) after checking 0 < lo < hi < inf."""
    if len(bounds) != 2:
        raise ValueError(f"prior_bounds must be a pair (lower, upper), got {bounds!r}")
    lo, hi = (validation.positive("prior_bounds", b) for b in bounds)
    if not lo < hi:
        raise ValueError(f"prior_bounds must satisfy lower < upper, got {bounds!r}")
    return lo, hi


def last_layer_theta(layers: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """Flat last-layer parameters theta = [W | b].reshape(-1) `[P]` of member 0 of a stacked MLP."""
    W, b = layers[-1]
    return torch.cat([W[0], b[0][:, None]], dim=1).reshape(-1)


def augment(phi: torch.Tensor) -> torch.Tensor:
    """Return phit = (phi, 1) `[N, H+1]` for features phi `[N, H]` (bias coordinate last)."""
    return torch.cat([phi, torch.ones_like(phi[:, :1])], dim=1)


def last_layer_jacobians(theta: torch.Tensor, phit: torch.Tensor) -> torch.Tensor:
    """Return J_i = d f(x_i) / d theta `[N, K, P]` by `vmap(jacrev)` over samples.

    Args:
        theta: flat last-layer parameters `[P]`, P = K (H+1).
        phit: augmented features `[N, H+1]`.
    """
    width = phit.shape[1]

    def logits(th: torch.Tensor, ph: torch.Tensor) -> torch.Tensor:
        return th.reshape(-1, width) @ ph

    return vmap(jacrev(logits), in_dims=(None, 0))(theta, phit)


def ggn(theta: torch.Tensor, phit: torch.Tensor, *, chunk: int = 512) -> torch.Tensor:
    """Return the generalised Gauss-Newton (= Fisher) matrix sum_i J_i^T Lambda_i J_i `[P, P]`.

    Summed (not averaged) over the N samples: it is the Hessian of the summed NLL for a linear
    last layer. Jacobians come from `torch.func`; see `ggn_kron` for the closed-form oracle.
    """
    P = theta.shape[0]
    out = torch.zeros(P, P, dtype=theta.dtype)
    for start in range(0, phit.shape[0], chunk):
        ph = phit[start:start + chunk]
        J = last_layer_jacobians(theta, ph)                                     # [n, K, P]
        q = torch.softmax(ph @ theta.reshape(-1, ph.shape[1]).T, dim=-1)        # [n, K]
        lam = torch.diag_embed(q) - q[:, :, None] * q[:, None, :]               # [n, K, K]
        A = lam @ J                                                             # [n, K, P]
        out += J.reshape(-1, P).T @ A.reshape(-1, P)
    return out


def ggn_kron(theta: torch.Tensor, phit: torch.Tensor) -> torch.Tensor:
    """Closed-form oracle for `ggn`: sum_i Lambda_i (x) phit_i phit_i^T, since J_i = I_K (x) phit_i^T."""
    width = phit.shape[1]
    q = torch.softmax(phit @ theta.reshape(-1, width).T, dim=-1)
    lam = torch.diag_embed(q) - q[:, :, None] * q[:, None, :]
    K = q.shape[1]
    return torch.einsum("nkl,nh,ng->khlg", lam, phit, phit).reshape(K * width, K * width)


def log_marginal_likelihood(delta: float | np.ndarray, *, nll: float, theta_norm2: float,
                            eigvals: np.ndarray) -> np.ndarray:
    """Laplace log evidence log p(D | delta) (module docstring) for prior precision(s) `delta`.

    Args:
        delta: prior precision(s) > 0, scalar or `[G]`.
        nll: summed training cross-entropy at theta_MAP (nats).
        theta_norm2: ||theta_MAP||^2.
        eigvals: eigenvalues of the GGN `[P]` (clipped at 0).
    """
    d = np.asarray(delta, dtype=np.float64)[..., None]
    P = eigvals.shape[0]
    return (-nll - 0.5 * d[..., 0] * theta_norm2 + 0.5 * P * np.log(d[..., 0])
            - 0.5 * np.log(eigvals + d).sum(axis=-1))


def tune_prior_precision(*, nll: float, theta_norm2: float, eigvals: np.ndarray,
                         bounds: tuple[float, float] = (1e-4, 1e4), grid: int = 41) -> float:
    """Return the prior precision maximising `log_marginal_likelihood` on [bounds[0], bounds[1]].

    A log-spaced grid of `grid` points locates the best cell; a bounded scalar search over
    log delta refines it. The result always lies in the closed search range.
    """
    lo, hi = check_bounds(bounds)
    validation.positive_int("grid", grid, minimum=3)
    logs = np.linspace(math.log(lo), math.log(hi), grid)
    vals = log_marginal_likelihood(np.exp(logs), nll=nll, theta_norm2=theta_norm2, eigvals=eigvals)
    best = int(np.argmax(vals))
    a, b = logs[max(best - 1, 0)], logs[min(best + 1, grid - 1)]
    res = minimize_scalar(lambda t: -float(log_marginal_likelihood(math.exp(t), nll=nll,
                                                                   theta_norm2=theta_norm2, eigvals=eigvals)),
                          bounds=(a, b), method="bounded", options={"xatol": 1e-6})
    t = res.x if -res.fun >= vals[best] else logs[best]
    return float(np.clip(math.exp(t), lo, hi))


@dataclass(frozen=True)
class LastLayerPosterior:
    """Gaussian posterior N(mean, cov) over the flat last-layer parameters theta `[P]`.

    Attributes:
        mean: theta_MAP `[P]` float64.
        cov: posterior covariance (GGN + delta I)^-1 `[P, P]` float64.
        prior_precision: delta.
        log_marglik: log p(D | delta) at the chosen delta (nats).
        tuned: whether delta was chosen by the marginal likelihood.
        bounds: the search range for delta.
        nll: summed training cross-entropy at theta_MAP. eigvals: GGN eigenvalues `[P]` (numpy).
        eigvecs: the GGN's eigenvectors `[P, P]`. structure: "full", "kron" or "diag" (`ggn_eigen`).
    """

    mean: torch.Tensor
    cov: torch.Tensor
    prior_precision: float
    log_marglik: float
    tuned: bool
    bounds: tuple[float, float]
    nll: float
    eigvals: np.ndarray
    eigvecs: torch.Tensor | None = None
    structure: str = "full"

    def at(self, delta: float, *, tuned: bool = False) -> LastLayerPosterior:
        """The posterior with prior precision `delta` (same MAP and GGN): cov = V diag(1/(lambda + delta)) V^T."""
        delta = validation.positive("prior_precision", delta)
        vec = self.eigvecs
        cov = (vec / (torch.as_tensor(self.eigvals) + delta)) @ vec.T
        lml = float(self.log_evidence(delta))
        return LastLayerPosterior(self.mean, 0.5 * (cov + cov.T), delta, lml, tuned, self.bounds, self.nll,
                                  self.eigvals, vec, self.structure)

    def log_evidence(self, delta: float | np.ndarray) -> np.ndarray:
        """log p(D | delta) for other prior precisions (same MAP and GGN)."""
        return log_marginal_likelihood(delta, nll=self.nll, theta_norm2=float(self.mean @ self.mean),
                                       eigvals=self.eigvals)

    def logit_moments(self, phit: torch.Tensor, *, chunk: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the logit mean `[N, K]` and covariance J Sigma J^T `[N, K, K]` at features `phit`."""
        width = phit.shape[1]
        K = self.mean.shape[0] // width
        f_mu = phit @ self.mean.reshape(K, width).T
        blocks = self.cov.reshape(K, width, K, width)
        f_var = torch.cat([torch.einsum("nh,khlg,ng->nkl", ph, blocks, ph)
                           for ph in phit.split(chunk)]) if phit.shape[0] else phit.new_zeros(0, K, K)
        return f_mu, f_var

    def logit_variance_path(self, phit: torch.Tensor, deltas: np.ndarray) -> list[torch.Tensor]:
        """J Sigma(delta) J^T `[N, K, K]` at features `phit` for each prior precision in `deltas`, from
        the GGN's eigenpairs: Sigma(delta) = V diag(1/(lambda + delta)) V^T (no P x P product per delta)."""
        width = phit.shape[1]
        A = torch.einsum("nh,khj->nkj", phit, self.eigvecs.reshape(self.mean.shape[0] // width, width, -1))
        lam = torch.as_tensor(self.eigvals)
        return [torch.einsum("nkj,nlj->nkl", A / (lam + float(d)), A) for d in deltas]

    def log_proba(self, phit: torch.Tensor, weight_samples: torch.Tensor | None = None) -> torch.Tensor:
        """Predictive log p~ `[N, K]`: probit (`probit_log_proba`), or MC over `weight_samples` `[S, P]`."""
        if weight_samples is not None:
            return mc_log_proba(weight_samples, phit)
        return probit_log_proba(*self.logit_moments(phit))

    def sample_logits(self, phit: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
        """Return `count` independent draws per row of the logits f = Wt phit, theta ~ N(mean, cov),
        `[count, N, K]`: exact in law per row, f ~ N(f_mu, J Sigma J^T) (a fresh theta for each row)."""
        f_mu, f_var = self.logit_moments(phit)
        eig, vec = torch.linalg.eigh(0.5 * (f_var + f_var.transpose(-1, -2)))
        root = vec * eig.clamp_min(0.0).sqrt()[:, None, :]                      # root root^T = f_var
        z = torch.randn(count, *f_mu.shape, generator=generator, dtype=f_mu.dtype)
        return f_mu + torch.einsum("nkl,snl->snk", root, z)

    def sample(self, count: int, generator: torch.Generator) -> torch.Tensor:
        """Return `count` draws of theta `[count, P]` (Cholesky of the covariance)."""
        L = torch.linalg.cholesky(self.cov)
        z = torch.randn(count, self.mean.shape[0], generator=generator, dtype=_F64)
        return self.mean + z @ L.T


STRUCTURES = ("full", "kron", "diag")


def ggn_eigen(theta: torch.Tensor, phit: torch.Tensor, structure: str = "full") -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues `[P]` (clipped at 0) and eigenvectors `[P, P]` of the structured GGN.

    "full": `ggn`. "kron" (K-FAC): sum_i Lambda_i (x) phit_i phit_i^T ~= (1/n sum_i Lambda_i) (x)
    (sum_i phit_i phit_i^T), eigenpairs a_k g_h and q_k (x) u_h (the layout of theta, k major).
    "diag": the GGN's diagonal sum_i Lambda_i,kk phit_ih^2, eigenvectors the unit basis.
    """
    validation.one_of("structure", structure, STRUCTURES)
    width = phit.shape[1]
    if structure == "full":
        eig, vec = torch.linalg.eigh(ggn(theta, phit))
        return eig.clamp_min(0.0), vec
    q = torch.softmax(phit @ theta.reshape(-1, width).T, dim=-1)
    if structure == "diag":
        d = torch.einsum("nk,nh->kh", q * (1 - q), phit**2).reshape(-1)
        return d.clamp_min(0.0), torch.eye(d.shape[0], dtype=d.dtype)
    lam = (torch.diag_embed(q) - q[:, :, None] * q[:, None, :]).mean(dim=0)
    a, qa = torch.linalg.eigh(lam)
    g, qg = torch.linalg.eigh(phit.T @ phit)
    return torch.outer(a.clamp_min(0.0), g.clamp_min(0.0)).reshape(-1), torch.kron(qa, qg)


def fit_posterior(theta_map: torch.Tensor, phit: torch.Tensor, y: torch.Tensor, *,
                  prior_precision: float | None = None, bounds: tuple[float, float] = (1e-4, 1e4),
                  structure: str = "full") -> LastLayerPosterior:
    """Fit the last-layer Laplace posterior at theta_MAP `[P]` on training features `phit` `[n, H+1]`.

    Args:
        theta_map: MAP last-layer parameters, flat `[P]` float64.
        phit: augmented penultimate features of the n training points.
        y: training labels `[n]` int64.
        prior_precision: delta; None tunes it by the marginal likelihood on `bounds`.
        bounds: search range for delta (used only when tuning).
        structure: the GGN's structure, "full", "kron" or "diag" (`ggn_eigen`).
    """
    eig, vec = ggn_eigen(theta_map, phit, structure)
    width = phit.shape[1]
    log_q = torch.log_softmax(phit @ theta_map.reshape(-1, width).T, dim=-1)
    nll = float(-log_q.gather(1, y[:, None]).sum())
    norm2 = float(theta_map @ theta_map)
    eig_np = eig.numpy()
    if prior_precision is None:
        delta = tune_prior_precision(nll=nll, theta_norm2=norm2, eigvals=eig_np, bounds=bounds)
    else:
        delta = validation.positive("prior_precision", prior_precision)
    post = LastLayerPosterior(theta_map.clone(), vec, delta, math.nan, prior_precision is None, tuple(bounds), nll,
                              eig_np, vec, structure)
    return post.at(delta, tuned=prior_precision is None)


def probit_log_proba(f_mu: torch.Tensor, f_var: torch.Tensor, *, center: bool = True) -> torch.Tensor:
    """Multiclass probit (mean-field) predictive log softmax(kappa * f_mu) `[N, K]`.

    kappa_k = (1 + pi/8 Var f_k)^(-1/2). With `center`, logits are first projected onto the
    sum-zero subspace (f -> f - mean_k f_k): softmax ignores a common shift of all logits, so the
    variance along (1, ..., 1) carries no predictive uncertainty and would only shrink kappa.
    """
    if center:
        K = f_mu.shape[-1]
        C = torch.eye(K, dtype=f_mu.dtype) - 1.0 / K
        f_mu = f_mu @ C
        f_var = C @ f_var @ C
    kappa = torch.rsqrt(1.0 + math.pi / 8.0 * torch.diagonal(f_var, dim1=-2, dim2=-1).clamp_min(0.0))
    return torch.log_softmax(kappa * f_mu, dim=-1)


def mc_log_proba(thetas: torch.Tensor, phit: torch.Tensor) -> torch.Tensor:
    """Monte Carlo predictive log (1/S sum_s softmax(Wt_s phit)) `[N, K]` for weight draws `[S, P]`."""
    S, width = thetas.shape[0], phit.shape[1]
    logits = torch.einsum("nh,skh->snk", phit, thetas.reshape(S, -1, width))
    return torch.logsumexp(torch.log_softmax(logits, dim=-1), dim=0) - math.log(S)
