"""The Hinton loss at a student temperature T (E22): one logit residual for every student, the feed's
KD targets, chain independence, and bad input. Float64, fixed seeds.

- `kd.logit_residual` equals autograd of `kd.loss` (the Hinton loss) to 1e-12, and, by hand,
  (1 - lam)(q - e_y) + lam T (softmax(f / T) - t^(T)).
- Linear, MLP and ModuleStudent per-sample and batch gradients with `KDTargets` equal a Python loop
  of autograd through the student's own `log_probs` (tests/oracles.py's route) to 1e-10.
- T = 1 trains on the mixture's own objective (E1 is linear in t): the same trajectory to 1e-12.
- Exact BCPs at T = 3: every per-sample gradient at theta* vanishes (E22 a), to 1e-12.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import synthetic
from bkd_theory import cli, sgd
from bkd_theory.engine import RunConfig, build
from bkd_theory.engine.feed import Feed
from bkd_theory.engine.kd import soft_part
from bkd_theory.rng import chain_streams
from bkd_theory.students import KDTargets, Linear, MLP, ModuleStudent, logit_residual, temper
from bkd_theory.students.kd import loss
from test_module_student import ResTanh
from test_sgd import Trajectory, _path

F64 = torch.float64
TASK = synthetic.make_task("triangle")


def _targets(R: int, B: int, K: int, T: float, lam: float, seed: int = 0) -> KDTargets:
    rng = np.random.default_rng(seed)
    t = rng.dirichlet(np.ones(K), size=(R, B))
    y = rng.integers(0, K, size=(R, B))
    return KDTargets(torch.from_numpy((1 - lam) * np.eye(K)[y]), torch.from_numpy(lam * temper(t, T)), T)


def _loop(student, theta: torch.Tensor, x: torch.Tensor, t: KDTargets) -> torch.Tensor:
    """Per-sample gradients of the Hinton loss by autograd through `log_probs`, one sample at a time.

    log_probs gives log q = f - logsumexp(f), a shift of f that leaves every softmax(f / T) unchanged."""
    R, B = x.shape[:2]
    out = torch.zeros(R, B, student.num_params, dtype=F64)
    for r in range(R):
        for b in range(B):
            flat = theta[r].detach().clone().requires_grad_(True)
            f = student.log_probs(flat[None], x[r, b][None, None])[0, 0]
            (out[r, b],) = torch.autograd.grad(loss(f, t[r, b]), flat)
    return out


def test_logit_residual_is_the_gradient_of_the_hinton_loss():
    T, lam = 3.0, 0.3
    t = _targets(2, 5, 4, T, lam)
    f = torch.randn(2, 5, 4, dtype=F64, generator=torch.Generator().manual_seed(1), requires_grad=True)
    (auto,) = torch.autograd.grad(loss(f, t).sum(), f)
    r = logit_residual(f.detach(), t)
    q, qT = torch.softmax(f.detach(), -1), torch.softmax(f.detach() / T, -1)
    by_hand = (q - t.hard / (1 - lam)) * (1 - lam) + lam * T * (qT - t.soft / lam)
    torch.testing.assert_close(r, auto, rtol=0, atol=1e-12)
    torch.testing.assert_close(r, by_hand, rtol=0, atol=1e-12)


def test_tensor_targets_keep_the_e11_residual_bit_for_bit():
    f = torch.randn(3, 4, 3, dtype=F64, generator=torch.Generator().manual_seed(2))
    t = torch.from_numpy(np.random.default_rng(3).dirichlet(np.ones(3), size=(3, 4)))
    old = t.sum(dim=-1, keepdim=True) * torch.softmax(f, dim=-1) - t  # the students' formula before E22
    assert torch.equal(logit_residual(f, t), old)


def _students():
    torch.manual_seed(0)
    return [Linear(TASK, dtype=F64), Linear(TASK, gauge="full", dtype=F64), MLP(TASK, widths=(6,), activation="tanh", dtype=F64),
            ModuleStudent(ResTanh(TASK.dim, TASK.num_classes), dtype=F64)]


@pytest.mark.parametrize("student", _students(), ids=["linear-pinned", "linear-full", "mlp", "module"])
def test_every_student_gives_the_hinton_gradients(student):
    R, B = 2, 3
    theta = 0.3 * torch.randn(R, student.num_params, dtype=F64, generator=torch.Generator().manual_seed(4))
    x = torch.from_numpy(TASK.sample(R * B, np.random.default_rng(5))[0].reshape(R, B, -1))
    t = _targets(R, B, TASK.num_classes, 2.5, 0.6, seed=6)
    ref = _loop(student, theta, x, t)
    torch.testing.assert_close(student.per_sample_grads(theta, x, t), ref, rtol=0, atol=1e-10)
    torch.testing.assert_close(student.batch_grad(theta, x, t), ref.mean(1), rtol=0, atol=1e-10)
    one = student.sgd_step(theta, x[:, :1], t[:, :1], 0.1, out=torch.empty_like(theta))
    torch.testing.assert_close(one, theta - 0.1 * ref[:, 0], rtol=0, atol=1e-10)


def test_mixture_spec_and_run_lam_multiply():
    lam, base = soft_part(build(teacher="mixture:0.5:dirichlet:2", lam=0.4).teacher)
    assert lam == pytest.approx(0.2) and base.spec == "dirichlet:2"
    assert soft_part(build(teacher="bcp").teacher)[0] == 1.0


@pytest.mark.parametrize("regime", [dict(), dict(regime="finite", n=30, noise="frozen")], ids=["online", "finite-frozen"])
def test_temperature_one_is_the_mixture_objective(regime):
    kw = dict(task="triangle", teacher="mixture:0.5:dirichlet:2", lam=0.8, gamma=0.1, steps=300, chains=2, seed=1,
              instruments=[Trajectory(50)], **regime)
    plain, kd = sgd.run(**kw), sgd.run(kd_temperature=1.0, **kw)
    np.testing.assert_allclose(_path(kd), _path(plain), rtol=0, atol=1e-12)
    assert not np.array_equal(_path(sgd.run(kd_temperature=2.0, **kw)), _path(plain))


CASES = [dict(teacher="dirichlet:2", lam=0.5, batch=3), dict(teacher="mixture:0.7:bcp", regime="finite", n=40, noise="frozen"),
         dict(teacher="dirichlet:3", student="mlp:8:tanh", init="random")]


@pytest.mark.parametrize("case", CASES, ids=["linear-b3", "finite-frozen", "mlp"])
def test_chain_alone_equals_chain_in_batch(case):
    steps = 2 * max(1, sgd.PAGE_SAMPLES // case.get("batch", 1)) + 10  # into the third page of inputs
    kw = dict(task="triangle", gamma=0.05, steps=steps, seed=3, kd_temperature=3.0, **case)
    batch = sgd.run(chains=4, instruments=[Trajectory(50)], **kw)
    for r in (0, 3):
        alone = sgd.run(chains=1, first_chain=r, instruments=[Trajectory(50)], **kw)
        np.testing.assert_array_equal(_path(alone)[:, 0], _path(batch)[:, r])


def test_module_student_chain_alone_equals_chain_in_batch():
    torch.manual_seed(0)
    student = ModuleStudent(ResTanh(TASK.dim, TASK.num_classes), dtype=F64)
    kw = dict(gamma=0.05, steps=120, seed=2, init="random", kd_temperature=2.0, instruments=[Trajectory(40)])
    batch = sgd.run(TASK, student, "dirichlet:2", chains=3, **kw)
    alone = sgd.run(TASK, student, "dirichlet:2", chains=1, first_chain=2, **kw)
    np.testing.assert_array_equal(_path(alone)[:, 0], _path(batch)[:, 2])


def test_exact_bcps_at_any_temperature_interpolate():
    """E22 (a): with t = p, softmax(f*/T) = p^(T) at theta*, so the feed's KD targets give zero gradients."""
    cfg = RunConfig(task="triangle", teacher="bcp", kd_temperature=3.0, chains=2, dtype="float64")
    setup = build(cfg)
    x, t = Feed(cfg, setup.task, setup.teacher, [chain_streams(0, r) for r in range(2)], F64).next_page()
    star = setup.student.optimum(setup.task).expand(2, -1)
    per_chain = lambda a: a[:, :, 0].transpose(0, 1)  # noqa: E731  [L, R, 1, .] -> [R, L, .]
    g = setup.student.per_sample_grads(star, per_chain(x), KDTargets(per_chain(t.hard), per_chain(t.soft), t.T))
    assert g.shape[:2] == (2, x.shape[0])
    assert float(g.norm(dim=-1).max()) < 1e-12


def test_negative_targets_and_bad_temperatures_are_refused(capsys):
    with pytest.raises(ValueError, match="kd_temperature needs teacher targets t >= 0"):
        sgd.run(teacher="additive:0.05", kd_temperature=2.0, steps=5, chains=1)
    for bad in ("0", "-1", "nan", "inf"):
        assert cli.main(["run", "--kd-temperature", bad, "--steps", "5", "--chains", "1"]) == 2
        assert "kd_temperature must be a finite number in (0, inf)" in capsys.readouterr().err
    assert cli.main(["run", "--kd-temperature", "3", "--teacher", "bcp", "--steps", "20", "--chains", "2",
                     "--eval-every", "10", "--json"]) == 0
    assert '"kd_temperature": 3.0' in capsys.readouterr().out


def test_predict_reports_the_tempered_objective(capsys):
    """`bkd predict --kd-temperature T` reports E22's rows, the same numbers as the claims' recipe:
    exact BCPs with labels (lam = 1/2) have zero bias and a positive neighborhood."""
    from bkd_theory import cli
    from bkd_theory.claims import temperature as claims_t

    code = cli.main(["predict", "--task", "triangle", "--teacher", "bcp", "--kd-temperature", "3", "--lam", "0.5",
                     "--gamma", "0.05", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and abs(out["kd_T_bias"]) < 1e-12 and out["kd_T_excess_risk"] > 0
    from bkd_theory import claims

    ref = claims_t.tempered(claims.defaults("E22a-labels")[0].config, "neighborhood")
    assert out["kd_T_excess_risk"] == pytest.approx(ref.value, rel=1e-9)


def test_hessian_refuses_kd_targets_by_name():
    """The Hessian is the cross-entropy's (E1): KDTargets get a ValueError naming them, not a TypeError."""
    from bkd_theory.students import build_student
    from bkd_theory.students.kd import KDTargets

    task = synthetic.make_task("triangle")
    t = torch.full((1, 2, 3), 1 / 3, dtype=torch.float64)
    for spec in ("linear", "mlp:4:tanh"):
        s = build_student(spec, task, dtype=torch.float64)
        theta, x = torch.zeros(1, s.num_params, dtype=torch.float64), torch.zeros(1, 2, 2, dtype=torch.float64)
        with pytest.raises(ValueError, match="^targets: KDTargets"):
            s.hessian(theta[0], x[0], KDTargets(t[0], t[0], 2.0))
