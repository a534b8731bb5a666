"""Mean-field VI, the Laplace structures and the calibrated variants (DESIGN 2.10), float64.

Statistical checks use 4 SE from the samples (STYLE 4); each is also run against a deliberately
wrong formula, which the same tolerance must reject.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bkd_theory import rng
from bkd_theory.teachers import laplace, trained, vi
from synthetic import GaussianMixture

F64 = torch.float64
SMALL = dict(widths=(16,), epochs=6, batch_size=32)
Z = 4.0


@pytest.fixture(scope="module")
def triangle():
    task = GaussianMixture.triangle()
    x, y = task.sample(300, rng.stream(0, "adhoc", 700))
    return task, x, y


def _z(est: np.ndarray, se: np.ndarray, truth: np.ndarray) -> float:
    return float(np.max(np.abs(est - truth) / se))


def _layer(g: torch.Generator, out: int = 3, inp: int = 4) -> vi.GaussianLayer:
    def draw(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g, dtype=F64)

    return vi.GaussianLayer(draw(out, inp), 0.1 + draw(out, inp).abs(), draw(out), 0.1 + draw(out).abs())


def test_kl_to_prior_closed_form_against_torch_and_monte_carlo():
    g = torch.Generator().manual_seed(0)
    layer, sp = _layer(g), 0.7
    kl = float(vi.kl_to_prior([layer], sp))
    N = torch.distributions.Normal
    ref = sum(float(torch.distributions.kl_divergence(N(m, s), N(torch.zeros_like(m), sp)).sum())
              for m, s in ((layer.mu_w, layer.sigma_w), (layer.mu_b, layer.sigma_b)))
    assert abs(kl - ref) <= 1e-10 * abs(ref)
    # Monte Carlo: KL = E_q[log q(w) - log p(w)], 4000 draws, SE from the draws
    mus, sigmas = (torch.cat([layer.mu_w.ravel(), layer.mu_b]), torch.cat([layer.sigma_w.ravel(), layer.sigma_b]))
    w = mus + sigmas * torch.randn(4000, mus.numel(), generator=g, dtype=F64)
    log_ratio = (N(mus, sigmas).log_prob(w) - N(0.0, sp).log_prob(w)).sum(dim=1).numpy()
    est, se = log_ratio.mean(), log_ratio.std(ddof=1) / math.sqrt(len(log_ratio))
    assert abs(est - kl) <= Z * se
    wrong = kl + 0.5 * mus.numel()  # the closed form without its -1/2 per weight
    assert abs(est - wrong) > Z * se


def test_kl_weight_schedule():
    assert [vi.kl_weight(e, 2, 4) for e in range(7)] == [0.0, 0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    assert vi.kl_weight(0, 0, 0) == 1.0


def test_local_reparameterisation_moments_against_weight_sampling():
    g = torch.Generator().manual_seed(1)
    layer = _layer(g)
    h = torch.randn(5, 4, generator=g, dtype=F64)
    mean, var = vi.lrt_moments(h, layer)
    S = 20000
    W = layer.mu_w + layer.sigma_w * torch.randn(S, 3, 4, generator=g, dtype=F64)
    b = layer.mu_b + layer.sigma_b * torch.randn(S, 3, generator=g, dtype=F64)
    a = (torch.einsum("nj,skj->snk", h, W) + b[:, None, :]).numpy()        # [S, N, out]
    m_hat, v_hat = a.mean(axis=0), a.var(axis=0, ddof=1)
    # SE of a sample variance of a Gaussian: var sqrt(2/(S-1))
    assert _z(m_hat, np.sqrt(v_hat / S), mean.numpy()) <= Z
    assert _z(v_hat, v_hat * math.sqrt(2 / (S - 1)), var.numpy()) <= Z
    wrong = ((h.abs() @ layer.sigma_w.T) ** 2 + layer.sigma_b**2).numpy()  # (sum |h| sigma)^2: correlated weights
    assert _z(v_hat, v_hat * math.sqrt(2 / (S - 1)), wrong) > Z


@pytest.fixture(scope="module")
def vi_teacher(triangle):
    _, x, y = triangle
    return trained.fit_teacher("vi", x, y, num_classes=3, seed=2, mc_samples=4000, **SMALL)


def test_vi_is_a_reproducible_fixed_function_with_unbiased_posterior_draws(vi_teacher, triangle):
    task, x, y = triangle
    xe, _ = task.sample(6, rng.stream(0, "adhoc", 701))
    again = trained.fit_teacher("vi", x, y, num_classes=3, seed=2, mc_samples=4000, **SMALL)
    p = vi_teacher.predict_proba(xe)
    assert np.array_equal(p, again.predict_proba(xe)) and np.allclose(p.sum(axis=1), 1.0)
    assert np.allclose(vi_teacher.predict_proba(xe[:2]), p[:2], rtol=0, atol=1e-12)
    assert vi_teacher.config.ml_epochs == 1 and vi_teacher.config.anneal_epochs == 1  # epochs // 4 each
    # per-row LRT draws: their mean is E_w softmax(f_w(x)), which the 4000 fixed draws also estimate
    q = vi_teacher.sample_proba(xe, 4000, torch.Generator().manual_seed(3))
    se = np.hypot(q.std(axis=0, ddof=1), q.std(axis=0, ddof=1)) / math.sqrt(4000)  # both sides are 4000-draw means
    assert _z(q.mean(axis=0), se + 1e-12, p) <= Z
    det = trained.fit_teacher("deterministic", x, y, num_classes=3, seed=2, **SMALL).predict_proba(xe)
    assert q.std(axis=0).max() > 1e-3 and not np.allclose(p, det, atol=1e-3)


@pytest.mark.parametrize("kw,name", [(dict(prior_sigma=0.0), "prior_sigma"), (dict(prior_sigma=-1.0), "prior_sigma"),
                                     (dict(weight_decay=0.1), "weight_decay"), (dict(ml_epochs=-1), "ml_epochs"),
                                     (dict(mc_samples=0), "mc_samples"), (dict(init_sigma=0.0), "init_sigma")])
def test_vi_bad_settings_name_the_parameter(triangle, kw, name):
    _, x, y = triangle
    with pytest.raises(ValueError, match=rf"^{name}\b"):
        trained.fit_teacher("vi", x, y, **SMALL, **kw)


# ---------------------------------------------------------------------------------------------
# Last-layer Laplace structures and priors


@pytest.fixture(scope="module")
def features(triangle):
    _, x, y = triangle
    net = trained.fit_deterministic(x, y, num_classes=3, widths=(8,), epochs=10, seed=0)
    return laplace.last_layer_theta(net.model.layers), laplace.augment(net.model.features(x)), net


def test_structured_ggn_eigenpairs(features):
    theta, phit, _ = features
    full = laplace.ggn(theta, phit)
    for structure in laplace.STRUCTURES:
        eig, vec = laplace.ggn_eigen(theta, phit, structure)
        approx = (vec * eig) @ vec.T
        if structure == "full":
            assert torch.allclose(approx, full, atol=1e-8 * float(full.abs().max()))
        elif structure == "diag":
            assert torch.allclose(approx, torch.diag(torch.diagonal(full)), atol=1e-10)
        else:  # K-FAC: (mean Lambda) (x) (sum phit phit^T), in theta's (class-major) layout
            q = torch.softmax(phit @ theta.reshape(3, -1).T, dim=-1)
            lam = (torch.diag_embed(q) - q[:, :, None] * q[:, None, :]).mean(0)
            assert torch.allclose(approx, torch.kron(lam, phit.T @ phit), atol=1e-8 * float(full.abs().max()))
            assert not torch.allclose(approx, full, atol=1e-3 * float(full.abs().max()))  # an approximation


def test_posterior_logit_draws_match_the_logit_moments(features):
    theta, phit, _ = features
    post = laplace.fit_posterior(theta, phit, torch.zeros(len(phit), dtype=torch.int64), prior_precision=2.0,
                                 structure="kron")
    ph = phit[:4]
    f_mu, f_var = post.logit_moments(ph)
    f = post.sample_logits(ph, 20000, torch.Generator().manual_seed(4)).numpy()
    v_hat = np.einsum("snk,snl->nkl", f - f.mean(0), f - f.mean(0)) / (len(f) - 1)
    d = np.sqrt(np.einsum("nkk->nk", v_hat))
    se_cov = np.sqrt((d[:, :, None] ** 2 * d[:, None, :] ** 2 + v_hat**2) / len(f))  # Gaussian: Var(x_k x_l)
    assert _z(f.mean(0), d / math.sqrt(len(f)), f_mu.numpy()) <= Z
    assert _z(v_hat, se_cov, f_var.numpy()) <= Z
    assert _z(v_hat, se_cov, 2 * f_var.numpy()) > Z  # a covariance off by a factor 2 is rejected


@pytest.mark.parametrize("structure", laplace.STRUCTURES)
def test_laplace_structures_and_grid_prior_fit(triangle, structure):
    _, x, y = triangle
    lap = trained.fit_teacher("laplace", x, y, num_classes=3, structure=structure, **SMALL)
    grid = trained.fit_teacher("laplace", x, y, num_classes=3, structure=structure, prior="grid", **SMALL)
    lo, hi = lap.posterior.bounds
    grid_values = np.exp(np.linspace(math.log(lo), math.log(hi), 21))
    assert lap.posterior.structure == structure and lap.posterior.tuned
    assert np.isclose(grid_values, grid.prior_precision, rtol=1e-12).any()
    assert lap.posterior_draws and lap.sample_proba(x[:3], 2, torch.Generator().manual_seed(0)).shape == (2, 3, 3)
    with pytest.raises(ValueError, match=r"^structure\b"):
        trained.fit_teacher("laplace", x, y, structure="block", **SMALL)
    with pytest.raises(ValueError, match=r"^prior\b"):
        trained.fit_teacher("laplace", x, y, prior="evidence", **SMALL)


def test_temperature_minimises_held_out_nll(triangle):
    _, x, y = triangle
    ts = trained.fit_teacher("temperature_scaled", x, y, num_classes=3, seed=1, **SMALL)
    xh, yh = x[240:], y[240:]  # holdout 0.2 of 300: the last 60 points
    f = ts.net.model.logits(xh)[0]

    def nll(T: float) -> float:
        return float(-torch.log_softmax(f / T, dim=-1)[torch.arange(len(yh)), torch.as_tensor(yh)].mean())

    T = ts.temperature
    assert nll(T) <= min(nll(T * 1.05), nll(T / 1.05))
    np.testing.assert_allclose(ts.predict_proba(xh), torch.softmax(f / T, dim=-1).numpy(), rtol=0, atol=1e-14)
    with pytest.raises(ValueError, match=r"^holdout\b"):
        trained.fit_teacher("temperature_scaled", x, y, holdout=1.0, **SMALL)


def test_brier_net_is_trained_on_the_brier_score(triangle):
    _, x, y = triangle
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)

    def train(epochs: int, loss: str) -> list:
        gens = [rng.stream(0, "adhoc", 702)]
        tgens = [torch.Generator().manual_seed(5)]
        return laplace.train_mlp(xt, yt, 3, widths=(8,), epochs=epochs, lr=0.01, weight_decay=0.0, batch_size=len(x),
                                 p_drop=0.0, gens=gens, tgens=tgens, loss=loss)

    init = [(W.clone().requires_grad_(), b.clone().requires_grad_()) for W, b in train(0, "brier")]
    opt = torch.optim.Adam([t for pair in init for t in pair], lr=0.01)
    q = torch.softmax(laplace.forward(init, xt[None]), dim=-1)[0]
    ((q - torch.nn.functional.one_hot(yt, 3)) ** 2).sum(-1).mean().backward()  # one full-batch step on the Brier score
    opt.step()
    for (W, b), (W1, b1) in zip(init, train(1, "brier")):
        assert torch.allclose(W1, W.detach(), rtol=0, atol=1e-14) and torch.allclose(b1, b.detach(), rtol=0, atol=1e-14)
    ce = train(1, "ce")[-1][0]
    assert not torch.allclose(ce, init[-1][0].detach(), atol=1e-6)  # the cross-entropy takes another step
    br = trained.fit_teacher("brier", x, y, num_classes=3, seed=1, **SMALL)
    assert br.config.kind == "brier" and not br.posterior_draws
    with pytest.raises(ValueError, match=r"^kind\b"):
        trained.fit_teacher("bnn", x, y)
    with pytest.raises(ValueError, match=r"^loss\b"):
        train(1, "mse")


def test_logit_variance_path_equals_the_posterior_at_each_prior(features):
    theta, phit, _ = features
    post = laplace.fit_posterior(theta, phit, torch.zeros(len(phit), dtype=torch.int64), structure="full")
    for d, v in zip((0.1, 3.0), post.logit_variance_path(phit[:5], np.array([0.1, 3.0]))):
        ref = post.at(d).logit_moments(phit[:5])[1]
        assert torch.allclose(v, ref, rtol=1e-9, atol=1e-12 * float(ref.abs().max()))
