"""Throughput of the vectorised SGD engine against a naive PyTorch loop, measured in one run.

Naive baseline (as research notebooks do it): one model at a time, batch 1, an `nn.Linear` or a
2x128 ReLU `nn.Sequential`, autograd and `torch.optim.SGD`, on pre-drawn data tensors. Its data and
targets are drawn before the clock starts (this favours the baseline); the engine draws fresh
points and teacher targets inside its timed loop (online regime), with the reference numpy feed and
with the torch feed (`feed="torch"`: per-chain torch generators, other random numbers; the timed
run spans several pages of the feed, so drawing the next page overlaps training, as in any run of
more than one page). The baseline runs fewer chains
and steps than the engine; both are reported as chain-steps per second (one chain-step = one SGD
update of one chain), so the ratio compares like with like. A third rate, `grad`, times
`student.batch_grad` alone on pre-drawn data: the gap between it and the engine is the data feed,
the parameter update and the loop's bookkeeping.

A second table times the trace of the per-sample gradient covariance, tr Cov(g) =
m/(m-1) (mean ||g_i||^2 - ||mean g_i||^2), three ways on the same m points: `torch.func`
(`vmap(grad)`), a Python loop of autograd backward passes over samples, and the toolkit's
instrument path (`gradient_moments` over `student.grad_norms_and_sum`: per-sample gradients in closed form E11 for the linear student, outer-product norms without forming them for the MLP).

Beside each rate stands the physical bound per chain-step: the flops and bytes one chain-step needs
at least (`cost`), against the machine's float32 peak (a GEMM) and memory bandwidth (a triad),
both measured in the same run on the same threads. Two bounds: `mem cs/s` = bandwidth / bytes, the
limit of a loop that streams every chain's parameters from memory each step (read and written
once), and `flop cs/s` = peak / flops, the limit of a loop that keeps a block of chains in cache
(the binding limit once the memory traffic is blocked away). `of flop` = engine / flop bound says
how far from the machine's limit each path is.

Usage: python benchmarks/bench_engine.py [--quick] [--profile] [--threads N] [--device D] [--feeds numpy,torch] [--json]
With --json the last line printed is one JSON object with every rate, ratio, bound and the
machine's load average at the start and the end.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from bkd_theory.instruments import Distance, Every, ExcessRisk, gradient_moments
from bkd_theory.rng import generator
from bkd_theory.students import build_student
from bkd_theory.teachers import parse_teacher
from synthetic import make_task


@dataclass(frozen=True)
class Case:
    """One engine-vs-baseline comparison."""

    label: str
    student: str
    chains: int
    steps: int
    base_chains: int
    base_steps: int
    gamma: float
    feed: str = "numpy"


def cases(quick: bool) -> list[Case]:
    # engine steps are multiples of the feed's page (1024 samples per chain at batch 1), so no drawn
    # data is wasted; several pages, so the next page is drawn while this one trains
    if quick:
        return [
            Case("linear, numpy feed", "linear", 1000, 2048, 2, 300, 1e-3),
            Case("linear, torch feed", "linear", 1000, 2048, 2, 300, 1e-3, "torch"),
            Case("mlp 2x128, numpy feed", "mlp", 64, 1024, 2, 300, 5e-4),
            Case("mlp 2x128, torch feed", "mlp", 64, 1024, 2, 300, 5e-4, "torch"),
        ]
    return [
        Case("linear, numpy feed", "linear", 1000, 4096, 4, 1000, 1e-3),
        Case("linear, torch feed", "linear", 1000, 4096, 4, 1000, 1e-3, "torch"),
        Case("mlp 2x128, numpy feed", "mlp", 64, 3072, 4, 1000, 5e-4),
        Case("mlp 2x128, torch feed", "mlp", 64, 3072, 4, 1000, 5e-4, "torch"),
    ]


@dataclass(frozen=True)
class Machine:
    """float32 peak (GEMM) in flop/s and memory bandwidth (triad) in byte/s, measured here."""

    flops: float
    bandwidth: float
    l2_bytes: int


def measure_machine(seconds: float = 0.5) -> Machine:
    """Best of a few float32 GEMMs (n = 512) and triads a = b + s c on 2^25-element arrays."""
    n = 512
    a, b = torch.randn(n, n), torch.randn(n, n)
    best = float("inf")
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or best == float("inf"):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    flops = 2 * n**3 / best
    m = 2**25
    x, y, z = torch.empty(m), torch.randn(m), torch.randn(m)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        torch.add(y, z, alpha=0.5, out=x)
        best = min(best, time.perf_counter() - t0)
    return Machine(flops, 3 * 4 * m / best, _l2_bytes())


def _l2_bytes() -> int:
    try:
        text = open("/sys/devices/system/cpu/cpu0/cache/index2/size").read().strip()
        return int(text[:-1]) * 1024 if text.endswith("K") else int(text)
    except (OSError, ValueError):
        return 0


def cost(student: str, d: int, k: int, batch: int = 1) -> tuple[float, float, int]:
    """(flops, bytes, parameters) one chain-step needs at least: forward, backward and update of one
    chain on `batch` points, float32, the chain's parameters read and written once.

    Linear (pinned gauge, P = (K - 1)(d + 1)): logits 2P b, gradient P b, update 2P flops. MLP:
    forward 2P b, backward 4P b, update 2P flops (the multiply-adds of the weight matrices).
    """
    if student == "linear":
        p = (k - 1) * (d + 1)
        flops = 3 * p * batch + 2 * p
    else:
        p = d * 128 + 128 + 128 * 128 + 128 + 128 * k + k
        flops = 6 * p * batch + 2 * p
    return float(flops), float(8 * p + 4 * (d + k) * batch), p


def bounds(machine: Machine, flops: float, nbytes: float) -> tuple[float, float]:
    """(memory-streaming, compute) limits in chain-steps/s: bandwidth / bytes and peak / flops."""
    return machine.bandwidth / nbytes, machine.flops / flops


def naive_model(student: str, d: int, k: int) -> nn.Module:
    if student == "linear":
        return nn.Linear(d, k)
    return nn.Sequential(nn.Linear(d, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, k))


def naive_rate(case: Case, task, teacher, seed: int) -> float:
    """Chain-steps/s of the notebook loop: one model per chain, batch 1, autograd + optim.SGD."""
    elapsed = 0.0
    for r in range(case.base_chains):
        rng = generator(seed, 7, r)
        x, y = task.sample(case.base_steps, rng)
        t = teacher.sample(task.bcp(x), y, rng)
        xs, ts = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(t, dtype=torch.float32)
        torch.manual_seed(seed + r)
        model = naive_model(case.student, task.dim, task.num_classes)
        opt = torch.optim.SGD(model.parameters(), lr=case.gamma)
        start = time.perf_counter()
        for i in range(case.base_steps):
            opt.zero_grad()
            log_q = torch.log_softmax(model(xs[i : i + 1]), dim=-1)
            loss = -(ts[i : i + 1] * log_q).sum(dim=-1).mean()
            loss.backward()
            opt.step()
        elapsed += time.perf_counter() - start
    return case.base_chains * case.base_steps / elapsed


def engine_rate(case: Case, seed: int, instruments: list, profile: bool, device: str = "cpu") -> tuple[float, str]:
    """Chain-steps/s of `bkd_theory.sgd.run` (online, float32, batch 1, the case's feed, on `device`),
    after a short warm-up; the clock includes the run's set-up and its record."""
    from bkd_theory import sgd

    init = "perturbed" if case.student == "linear" else "random"
    common = dict(task="paper", standardize=True, student=case.student, teacher="onehot", gamma=case.gamma,
                  batch=1, init=init, init_scale=0.1, chains=case.chains, seed=seed, dtype="float32")
    # the defaults are left out, so the same script times an older engine without these options
    if case.feed != "numpy":
        common["feed"] = case.feed
    if device != "cpu":
        common["device"] = device
    sgd.run(steps=5, eval_every=5, instruments=[], **common)  # warm-up: imports, allocations
    prof = cProfile.Profile() if profile else None
    start = time.perf_counter()
    if prof:
        prof.enable()
    sgd.run(steps=case.steps, eval_every=max(1, case.steps // 10), instruments=instruments, **common)
    if prof:
        prof.disable()
    elapsed = time.perf_counter() - start
    report = ""
    if prof:
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(14)
        report = buf.getvalue()
    return case.chains * case.steps / elapsed, report


def grad_rate(case: Case, task, teacher, seed: int) -> float:
    """Chain-steps/s of `student.batch_grad` alone on pre-drawn data (no feed, no update, no checks).

    The gap between this and `engine_rate` is the data feed (per-chain sampling of inputs and
    targets), the parameter update and the loop's bookkeeping.
    """
    student = build_student(case.student, task, dtype=torch.float32)
    rng = generator(seed, 9)
    pages = min(case.steps, 128)
    x, y = task.sample(pages * case.chains, rng)
    t = teacher.sample(task.bcp(x), y, rng)
    xs = torch.as_tensor(x, dtype=torch.float32).reshape(pages, case.chains, 1, -1)
    ts = torch.as_tensor(t, dtype=torch.float32).reshape(pages, case.chains, 1, -1)
    theta = 0.05 * torch.randn(case.chains, student.num_params, generator=torch.Generator().manual_seed(seed))
    start = time.perf_counter()
    for k in range(case.steps):
        student.batch_grad(theta, xs[k % pages], ts[k % pages])
    return case.chains * case.steps / (time.perf_counter() - start)


def time_call(fn: Callable[[], float], repeats: int = 3) -> tuple[float, float]:
    """Return (best wall time in s, value) of `fn` over `repeats` calls."""
    best, value = float("inf"), float("nan")
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - start)
    return best, value


def trace_benchmark(student_spec: str, task, teacher, m: int, seed: int) -> list[tuple[str, float, float]]:
    """Time tr Cov(g) over m per-sample gradients: torch.func, Python loop, toolkit instrument."""
    rng = generator(seed, 8)
    x, y = task.sample(m, rng)
    t = teacher.sample(task.bcp(x), y, rng)
    xs, ts = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(t, dtype=torch.float32)
    torch.manual_seed(seed)
    model = naive_model(student_spec, task.dim, task.num_classes)
    params = {k: v.detach() for k, v in model.named_parameters()}

    def trace_of(g: torch.Tensor) -> float:
        g = g.double()
        return float(((g * g).sum(1).mean() - (g.mean(0) ** 2).sum()) * m / (m - 1))

    def loss1(p, xi, ti):
        return -(ti * torch.log_softmax(functional_call(model, p, (xi,)), dim=-1)).sum()

    psg = vmap(grad(loss1), in_dims=(None, 0, 0))

    def with_func() -> float:
        gs = psg(params, xs, ts)
        return trace_of(torch.cat([gs[k].reshape(m, -1) for k in params], dim=1))

    def with_loop() -> float:
        rows = []
        for i in range(m):
            model.zero_grad()
            loss1(dict(model.named_parameters()), xs[i], ts[i]).backward()
            rows.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]))
        return trace_of(torch.stack(rows))

    # the toolkit's path: the same parameters in the student's flat layout (full gauge for linear)
    opts = {"gauge": "full"} if student_spec == "linear" else {}
    student = build_student(student_spec, task, dtype=torch.float32, **opts)
    if student_spec == "linear":
        flat = torch.cat([params["weight"], params["bias"][:, None]], dim=1).reshape(1, -1)
    else:
        flat = torch.cat([v.reshape(-1) for v in params.values()]).reshape(1, -1)

    def with_instrument() -> float:
        mom = gradient_moments(student, flat, lambda c: (xs[None, :c], ts[None, :c]), m)
        return float(mom.cov_trace[0])

    out = []
    for name, fn in (("torch.func vmap(grad)", with_func), ("python loop (autograd)", with_loop),
                     ("instrument (grad_norms_and_sum)", with_instrument)):
        seconds, value = time_call(fn)
        out.append((name, seconds, value))
    return out


def engine_table(args: argparse.Namespace, task, teacher, machine: Machine) -> tuple[dict, list]:
    """Print the engine-vs-naive table; return {"linear": {...}, "mlp": {...}} and the profiles."""
    print("rates in chain-steps/s (cs/s); ratio = engine / naive. naive: fewer chains and steps than the engine,")
    print("data pre-drawn outside its clock. grad: student.batch_grad alone on pre-drawn data.")
    print("+2 instr: engine with dist2 and excess_risk (eval set of 2000 points) every steps/10.")
    print("mem / flop: the machine's limits per chain-step (bandwidth / bytes, peak / flops); of flop = engine / flop.\n")
    header = (f"{'student':<24}{'R':>6}{'steps':>7}{'engine cs/s':>14}{'+2 instr cs/s':>15}{'grad cs/s':>13}"
              f"{'naive cs/s':>12}{'ratio':>9}{'flop/cs':>10}{'byte/cs':>10}{'mem cs/s':>13}{'flop cs/s':>14}{'of flop':>9}")
    print(header)
    print("-" * len(header))
    out, profiles, naive = {}, [], {}
    for case in [c for c in cases(args.quick) if c.feed in args.feeds.split(",")]:
        eng, prof = engine_rate(case, args.seed, [], args.profile, args.device)
        few = [Distance(Every(max(1, case.steps // 10))), ExcessRisk(Every(max(1, case.steps // 10)))]
        eng_few, _ = engine_rate(case, args.seed, few, False, args.device)
        if case.student not in naive:  # one baseline and one kernel rate per student, shared by both feeds
            naive[case.student] = naive_rate(case, task, teacher, args.seed), grad_rate(case, task, teacher, args.seed)
        base, kern = naive[case.student]
        flops, nbytes, p = cost(case.student, task.dim, task.num_classes)
        mem, lim = bounds(machine, flops, nbytes)
        print(f"{case.label:<24}{case.chains:>6}{case.steps:>7}{eng:>14,.0f}{eng_few:>15,.0f}{kern:>13,.0f}{base:>12,.0f}"
              f"{eng / base:>8.1f}x{flops:>10,.0f}{nbytes:>10,.0f}{mem:>13,.0f}{lim:>14,.0f}{eng / lim:>9.2%}")
        in_cache = case.chains * p * 4 <= machine.l2_bytes
        key = ("linear" if case.student == "linear" else "mlp") + ("" if case.feed == "torch" else "_numpy_feed")
        out[key] = {
            "feed": case.feed, "device": args.device, "ratio": eng / base, "engine_cs_per_s": eng, "naive_cs_per_s": base, "grad_cs_per_s": kern,
            "with_instruments_cs_per_s": eng_few, "instrument_share": 1.0 - eng_few / eng, "chains": case.chains,
            "steps": case.steps, "naive_chains": case.base_chains, "naive_steps": case.base_steps,
            "flops_per_cs": flops, "bytes_per_cs": nbytes, "memory_bound_cs_per_s": mem,
            "compute_bound_cs_per_s": lim, "of_compute_bound": eng / lim,
            "parameters_fit_in_l2": in_cache}
        if prof:
            profiles.append((case.label, prof))
    return out, profiles


def trace_table(args: argparse.Namespace, task, teacher, machine: Machine) -> dict:
    """Print the per-sample gradient table; return {"linear_per_sample": ..., "mlp_per_sample": ...}."""
    m = 256 if args.quick else 1024
    print(f"\nper-sample gradient covariance trace tr Cov(g), m = {m} samples, one model")
    header = (f"{'student':<12}{'method':<32}{'seconds':>10}{'speed-up vs loop':>18}{'tr Cov':>12}"
              f"{'bound s':>11}{'of bound':>10}")
    print(header)
    print("-" * len(header))
    out = {}
    for spec in ("linear", "mlp"):
        rows = trace_benchmark(spec, task, teacher, m, args.seed)
        loop = rows[1][1]
        flops, nbytes, p = cost(spec, task.dim, task.num_classes, batch=m)
        # no update; the moments need only ||g_i||^2 and sum g_i, so no per-sample gradient need be written:
        # the bound reads the parameters and the m points once and does the forward and backward flops
        lim = max((flops - 2 * p) / machine.flops, 4 * (p + m * (task.dim + task.num_classes)) / machine.bandwidth)
        for name, seconds, value in rows:
            print(f"{spec:<12}{name:<32}{seconds:>10.4f}{loop / seconds:>17.1f}x{value:>12.5g}{lim:>11.2e}"
                  f"{lim / seconds:>9.1%}")
        out[f"{spec}_per_sample"] = {"ratio": loop / rows[2][1], "seconds": rows[2][1], "loop_seconds": loop,
                                     "torch_func_seconds": rows[0][1], "bound_seconds": lim, "samples": m}
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (~15 s)")
    ap.add_argument("--profile", action="store_true", help="cProfile the engine runs and print the top functions")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads for both engine and baseline (default 1: the batch-1 baseline "
                         "cannot use more, and idle spinning threads distort timings on a busy machine)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="device of the engine runs (the baseline runs on the CPU)")
    ap.add_argument("--feeds", default="numpy,torch", help="the data feeds to time, comma-separated (default both)")
    ap.add_argument("--json", action="store_true", help="print one JSON object with every number as the last line")
    args = ap.parse_args(argv)
    load_start = os.getloadavg()
    torch.set_num_threads(args.threads)
    task = make_task("paper", standardize=True)
    teacher = parse_teacher("onehot")
    machine = measure_machine()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, engine on {args.device}, float32, batch 1, onehot targets, "
          f"paper task (K={task.num_classes}, d={task.dim}, standardised)")
    print(f"machine: {machine.flops / 1e9:.1f} GFLOP/s float32 GEMM peak, {machine.bandwidth / 1e9:.1f} GB/s triad "
          f"bandwidth, L2 {machine.l2_bytes // 1024} KiB; load average {load_start[0]:.2f} at the start")
    result, profiles = engine_table(args, task, teacher, machine)
    result.update(trace_table(args, task, teacher, machine))
    for label, prof in profiles:
        print(f"\nprofile of the engine run ({label}), top functions by own time:\n{prof}")
    load_end = os.getloadavg()
    print(f"\nload average {load_end[0]:.2f} at the end (an idle machine reads about 0; above 0.5 the ratios are "
          "not trustworthy)")
    if args.json:
        result["machine"] = {"gemm_flops": machine.flops, "triad_bytes_per_s": machine.bandwidth,
                             "l2_bytes": machine.l2_bytes, "threads": torch.get_num_threads(),
                             "torch": torch.__version__, "load_start": list(load_start), "load_end": list(load_end),
                             "quick": args.quick}
        print(json.dumps(result))


if __name__ == "__main__":
    main()
