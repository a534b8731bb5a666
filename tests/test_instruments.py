"""Instruments on hand-built step contexts (float64), with oracles and SE-based tolerances."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from bkd_theory import instruments as ins
from bkd_theory import stats
from bkd_theory.rng import generator
from bkd_theory.students import Linear
from bkd_theory.teachers import parse_teacher
from synthetic.gaussian import GaussianMixture

F64 = torch.float64
CONTRACT_QUANTITIES = {
    "dist2", "excess_risk", "grad_second_moment", "grad_cov_trace", "sigma2_at_optimum",
    "val_loss", "accuracy", "bayes_agreement", "ece",
}


@pytest.fixture(scope="module")
def task():
    return GaussianMixture.triangle()


def make_ctx(task, student, teacher, theta, *, n_eval=2000, seed=0, active=None, star=True):
    """A StepContext as the loop builds it, with a fixed eval set and per-chain instrument streams."""
    eval_set = ins.EvalSet.from_task(task, n_eval, generator(seed, 1), dtype=student.dtype)
    chains = theta.shape[0]
    return ins.StepContext(
        step=0, gamma=0.1, theta=theta, theta_star=student.optimum(task) if star else None,
        student=student, task=task, teacher=teacher, batch_size=1, eval_set=eval_set,
        active=torch.ones(chains, dtype=torch.bool) if active is None else active,
        streams=ins.StreamBank(seed, np.arange(chains)),
    )


def observe(inst, ctx):
    """The instrument's values per chain `[R]` (the per-chain part of a `PerPoint`)."""
    return {k: (v.values if isinstance(v, ins.PerPoint) else v) for k, v in inst.observe(ctx).items()}


def at_optimum(student, task, chains):
    return student.optimum(task).to(F64).reshape(1, -1).repeat(chains, 1)


@pytest.mark.parametrize("gauge", ["pinned", "full"])
def test_optimality_at_and_off_optimum(task, gauge):
    student = Linear(task, gauge=gauge, dtype=F64)
    theta = at_optimum(student, task, 3)
    theta[1] += 0.3 * torch.randn(student.num_params, generator=torch.Generator().manual_seed(0), dtype=F64)
    ctx = make_ctx(task, student, parse_teacher("onehot"), theta)
    out = {**observe(ins.Distance(), ctx), **observe(ins.ExcessRisk(), ctx)}
    assert out["dist2"][0] == 0.0 and abs(out["excess_risk"][0]) < 1e-12
    # oracle: KL(p || q) written out with numpy on the same eval points
    log_p = ctx.eval_set.log_p.numpy()
    log_q = student.log_probs(theta[1:2], ctx.eval_set.x[None])[0].numpy()
    kl = (np.exp(log_p) * (log_p - log_q)).sum(-1).mean()
    assert out["excess_risk"][1].item() == pytest.approx(kl, rel=1e-12) and kl > 0
    # oracle: the displacement less its gauge part (full gauge: every column centred over the K rows)
    delta = (theta[1] - theta[0]).numpy().reshape(student.rows, -1)
    if gauge == "full":
        delta = delta - delta.mean(axis=0)
    assert out["dist2"][1].item() == pytest.approx((delta**2).sum(), rel=1e-12)


def test_optimality_without_optimum_and_diverged_chains(task):
    student = Linear(task, dtype=F64)
    theta = at_optimum(student, task, 2)
    ctx = make_ctx(task, student, parse_teacher("bcp"), theta, star=False)
    assert torch.isnan(observe(ins.Distance(), ctx)["dist2"]).all()
    assert torch.isnan(observe(ins.GradientNoiseAtOptimum(probe_size=4), ctx)["sigma2_at_optimum"]).all()
    theta[1] = float("nan")
    ctx = make_ctx(task, student, parse_teacher("bcp"), theta, active=torch.tensor([True, False]))
    for inst in ins.default_instruments(1, 1, probe_size=4):
        for name, v in observe(inst, ctx).items():
            assert torch.isfinite(v[0]), name
            assert name == "sigma2_at_optimum" or torch.isnan(v[1]), name


def test_bcp_gradient_vanishes_at_optimum(task):
    """Prop. 2 (interpolation): with bcp targets every per-sample gradient at theta* is 0."""
    student = Linear(task, dtype=F64)
    ctx = make_ctx(task, student, parse_teacher("bcp"), at_optimum(student, task, 4))
    out = {**observe(ins.GradientNoise(probe_size=64), ctx), **observe(ins.GradientNoiseAtOptimum(probe_size=64), ctx)}
    for name in ("grad_second_moment", "grad_cov_trace", "sigma2_at_optimum"):
        assert out[name].abs().max() < 1e-24, name
    ctx = make_ctx(task, student, parse_teacher("onehot"), at_optimum(student, task, 4))
    assert (observe(ins.GradientNoise(probe_size=64), ctx)["grad_second_moment"] > 0.1).all()


def test_gradient_moments_match_sample_formulas_and_chunking(task):
    """Oracle: E||g||^2 and the unbiased tr Cov from an explicit [R, m, P] array; chunking is exact."""
    student = Linear(task, gauge="full", dtype=F64)
    chains, m = 3, 10
    gen = torch.Generator().manual_seed(1)
    theta = at_optimum(student, task, chains) + 0.5 * torch.randn(chains, student.num_params, generator=gen, dtype=F64)
    x, t = ins.probe_draw(task, parse_teacher("onehot"), generator(0, 3), chains, F64)(m)

    def draw_from_table():
        pos = [0]

        def draw(c):
            sl = slice(pos[0], pos[0] + c)
            pos[0] += c
            return x[:, sl], t[:, sl]

        return draw

    g = student.per_sample_grads(theta, x, t).numpy()  # [R, m, P]
    sq = (g**2).sum(-1)
    cov_trace = np.trace(np.stack([np.cov(g[r].T) for r in range(chains)]), axis1=1, axis2=2)
    for budget in (10**9, 3 * chains * student.num_params * 8):  # one chunk; chunks of 3 (+1)
        mom = ins.gradient_moments(student, theta, draw_from_table(), m, budget_bytes=budget)
        np.testing.assert_allclose(mom.second_moment.numpy(), sq.mean(1), rtol=1e-12)
        np.testing.assert_allclose(mom.cov_trace.numpy(), cov_trace, rtol=1e-10)
        np.testing.assert_allclose(mom.second_moment_se.numpy(), sq.std(1, ddof=1) / math.sqrt(m), rtol=1e-10)
    assert ins.moments.chunk_size(chains, student.num_params, 8, m, 3 * chains * student.num_params * 8) == 3


def linear_onehot_sigma2(task, n, rng):
    """Closed form for the full-gauge linear student (E11, DESIGN 2.5): E ||xt||^2 (1 - ||p||^2).

    The expectation over x is a Monte Carlo mean; returns (value, se).
    """
    x, _ = task.sample(n, rng)
    v = ((x**2).sum(1) + 1.0) * (1.0 - (task.bcp(x) ** 2).sum(1))
    return v.mean(), v.std(ddof=1) / math.sqrt(n)


def test_sigma2_onehot_matches_linear_closed_form(task):
    student = Linear(task, gauge="full", dtype=F64)
    teacher = parse_teacher("onehot")
    exact, exact_se = linear_onehot_sigma2(task, 200_000, generator(0, 4))
    est = ins.sigma2_at_optimum(student, task, teacher, 20_000, generator(0, 5))
    # both sides are Monte Carlo means of independent samples: 4 combined SE (normal theory)
    assert abs(est.value - exact) <= 4 * math.hypot(est.se, exact_se)
    # the per-chain instrument: each chain is an independent estimate, SE across chains
    ctx = make_ctx(task, student, teacher, at_optimum(student, task, 16), seed=1)
    per_chain = observe(ins.GradientNoiseAtOptimum(probe_size=500), ctx)["sigma2_at_optimum"].numpy()
    se = per_chain.std(ddof=1) / math.sqrt(len(per_chain))
    assert abs(per_chain.mean() - exact) <= 4 * math.hypot(se, exact_se)


def test_calibration_of_the_bayes_predictor(task):
    student = Linear(task, dtype=F64)
    ctx = make_ctx(task, student, parse_teacher("onehot"), at_optimum(student, task, 2), n_eval=5000)
    out = observe(ins.Calibration(), ctx)
    assert out["ece"].abs().max() < 1e-12  # q = p: confidence equals true prob of the predicted class
    assert (out["bayes_agreement"] == 1).all()
    bayes = ctx.eval_set.p.max(-1).values.numpy()  # E_x max_k p_k on independent points would also do
    acc = out["accuracy"][0].item()
    se = math.sqrt(acc * (1 - acc) / 5000)  # Bernoulli labels given x: binomial SE of the accuracy
    assert abs(acc - bayes.mean()) <= 4 * se


def test_ece_matches_loop_oracle():
    gen = torch.Generator().manual_seed(3)
    p = torch.softmax(2 * torch.randn(400, 4, generator=gen, dtype=F64), -1)
    q = torch.softmax(3 * torch.randn(2, 400, 4, generator=gen, dtype=F64), -1)
    got = ins.expected_calibration_error(q, p, bins=15)
    for r in range(2):
        conf, pred = q[r].max(-1)
        acc = p[torch.arange(400), pred]
        ece = 0.0
        for b in range(15):
            lo, hi = b / 15, (b + 1) / 15
            sel = (conf >= lo) & ((conf < hi) if b < 14 else (conf <= hi))
            if sel.any():
                ece += sel.double().mean() * abs(conf[sel].mean() - acc[sel].mean())
        assert got[r].item() == pytest.approx(float(ece), rel=1e-12)
    sharpened = torch.softmax(3 * p.log(), -1)[None]  # overconfident: ECE > 0
    assert ins.expected_calibration_error(sharpened, p).item() > 0.01


def test_validation_loss_is_cross_entropy_against_labels(task):
    student = Linear(task, dtype=F64)
    theta = at_optimum(student, task, 2) * torch.tensor([[1.0], [0.5]], dtype=F64)
    ctx = make_ctx(task, student, parse_teacher("onehot"), theta)
    got = observe(ins.ValidationLoss(), ctx)["val_loss"]
    for r in range(2):
        logits = student.log_probs(theta[r : r + 1], ctx.eval_set.x[None])[0]
        ref = torch.nn.functional.cross_entropy(logits, ctx.eval_set.y)
        assert got[r].item() == pytest.approx(ref.item(), rel=1e-12)


def curve_table(values: np.ndarray, steps: np.ndarray) -> pd.DataFrame:
    t_len, chains = values.shape
    return pd.DataFrame({
        "step": np.repeat(steps, chains), "chain": np.tile(np.arange(chains), t_len),
        "quantity": "val_loss", "value": values.reshape(-1),
    })


def test_loss_noise_raw_and_detrended():
    steps = np.arange(0, 1000, 10)
    trend = 2.0 - 1e-3 * steps[:, None] * np.array([1.0, 3.0])
    out = ins.loss_noise(curve_table(trend, steps))
    assert (out["loss_noise_detrended"].abs() < 1e-12).all() and (out["loss_noise"] > 0.1).all()
    assert out["points"].iloc[0] == 50  # default: the last half of the run (steps >= 495)
    # raw noise of a pure trend over the window: slope * std of the window's steps
    w = steps[steps >= 495]
    np.testing.assert_allclose(out["loss_noise"], 1e-3 * np.array([1.0, 3.0]) * w.std(ddof=1), rtol=1e-12)
    rng = np.random.default_rng(0)
    noisy = trend + 0.05 * rng.standard_normal(trend.shape)
    out = ins.loss_noise(curve_table(noisy, steps), window=40)
    assert out["points"].iloc[0] == 40
    # detrended std of 40 Gaussian residuals: relative SE ~ 1/sqrt(2 * 38)
    assert np.all(np.abs(out["loss_noise_detrended"] / 0.05 - 1) <= 4 / math.sqrt(76))


def test_drift_by_batch_means():
    """stats.drift: no significant trend in a flat window, a significant one in a decaying window
    (the per-quantity stationarity check of Run.summary uses it, DESIGN 2.9)."""
    rng = np.random.default_rng(1)
    flat = 1.0 + rng.standard_normal((200, 64))
    d, se = stats.drift(flat)
    assert abs(d) <= 4 * se
    d, se = stats.drift(flat + 5 * np.exp(-np.arange(200) / 50)[:, None])
    assert d < -4 * se


def test_default_instruments_cover_the_contract(task):
    insts = ins.default_instruments(eval_every=10, steps=95, probe_size=8)
    assert all(isinstance(i, ins.Instrument) for i in insts)
    assert [s for s in range(96) if insts[0].schedule(s)] == [*range(0, 100, 10)][:10] + [95]
    student = Linear(task, dtype=F64)
    ctx = make_ctx(task, student, parse_teacher("onehot"), at_optimum(student, task, 3))
    names = set()
    for inst in insts:
        out = observe(inst, ctx)
        assert all(v.shape == (3,) for v in out.values())
        names |= set(out)
    assert names == CONTRACT_QUANTITIES


@pytest.mark.parametrize("bad, match", [
    (lambda: ins.GradientNoise(probe_size=1), "probe_size"),
    (lambda: ins.Calibration(bins=0), "bins"),
    (lambda: ins.default_instruments(0, 10), "eval_every"),
    (lambda: stats.drift(np.ones((8, 3)), batches=1), "batches"),
    (lambda: stats.trailing_window(np.arange(5), 0.0), "window"),
])
def test_bad_input_names_the_parameter(bad, match):
    with pytest.raises(ValueError, match=match):
        bad()


def test_eval_log_q_chunked_over_chains_is_exact(task, monkeypatch):
    student = Linear(task, dtype=F64)
    theta = at_optimum(student, task, 5) * torch.linspace(0.5, 1.5, 5, dtype=F64)[:, None]
    whole = make_ctx(task, student, parse_teacher("onehot"), theta, n_eval=100).eval_log_q
    monkeypatch.setattr(ins.context, "EVAL_CHUNK_ELEMENTS", 2 * 100 * (task.dim + 1))  # chunks of 2 chains
    chunked = make_ctx(task, student, parse_teacher("onehot"), theta, n_eval=100).eval_log_q
    assert torch.equal(whole, chunked) and whole.shape == (5, 100, task.num_classes)


@pytest.mark.parametrize("student,chains", [("linear", 40), ("mlp:32x32", 20)])
def test_eval_log_q_does_not_depend_on_its_blocks(student, chains):
    """The evaluation in blocks (`context.eval_log_q`) equals one call over the whole sample, bit for bit,
    and the linear student's larger blocks equal the network-sized ones."""
    import bkd_theory.instruments.context as context
    from bkd_theory.engine.build import build
    from bkd_theory.instruments import EvalSet, StepContext, StreamBank
    from bkd_theory.rng import chain_streams, run_streams

    setup = build(None, task="paper", standardize=True, student=student, chains=chains, dtype="float32")
    ev = EvalSet.from_task(setup.task, 2500, run_streams(0).data, torch.float32)
    theta = setup.student.init_params("random", chains, setup.task, [chain_streams(0, r) for r in range(chains)], 0.3)

    def blocked() -> torch.Tensor:
        ctx = StepContext(step=1, gamma=0.1, theta=theta, theta_star=None, student=setup.student, task=setup.task,
                          teacher=setup.teacher, batch_size=1, eval_set=ev, active=torch.ones(chains, dtype=torch.bool),
                          streams=StreamBank(0, np.arange(chains)))
        return ctx.need("eval_log_q")

    whole = setup.student.log_probs(theta, ev.x.expand(chains, -1, -1))
    assert torch.equal(blocked(), whole)
    saved = context.FEATURE_EVAL_POINTS, context.FEATURE_EVAL_ROWS
    context.FEATURE_EVAL_POINTS, context.FEATURE_EVAL_ROWS = context.EVAL_POINTS, context.EVAL_ROWS
    try:
        assert torch.equal(blocked(), whole)
    finally:
        context.FEATURE_EVAL_POINTS, context.FEATURE_EVAL_ROWS = saved
