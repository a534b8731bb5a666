"""Where the 2x128 MLP's SGD step spends its time, and two ways to speed it up that do not pay here.

One SGD step of R stacked chains at batch 1 (float32, paper task, 1 thread), timed four ways in one run:
- `engine`: `MLP.sgd_step` on all R chains (the engine's path);
- `blocks of c`: the same step applied to consecutive blocks of c chains (chain blocks small enough
  for the parameters to stay in L2 through forward, backward and update); results are bit for bit
  those of the unblocked step (every kernel is chain-local), so only the time differs;
- `eager step`: the same step written as one plain function of the six weight tensors;
- `compiled step` (with --compile): that function under `torch.compile` (inductor, C++ on CPU), with
  its compile time.
Each row gives chain-steps/s, the time of one step, and its share of the per-layer operations.

Usage: python benchmarks/bench_mlp_step.py [--chains R] [--steps N] [--compile] [--json]
"""
from __future__ import annotations

import argparse
import json
import time

import torch

import synthetic
from bkd_theory.students import build_student


def engine_rate(student, R: int, steps: int, block: int | None, seed: int = 0) -> tuple[float, torch.Tensor]:
    """(chain-steps/s, final theta) of `steps` SGD steps of R chains, applied in blocks of `block` chains."""
    g = torch.Generator().manual_seed(seed)
    theta = 0.05 * torch.randn(R, student.num_params, generator=g)
    out = torch.empty_like(theta)
    x = torch.randn(steps, R, 1, student.dim, generator=g)
    t = torch.nn.functional.one_hot(torch.randint(0, student.num_classes, (steps, R, 1), generator=g),
                                    student.num_classes).float()
    c = block or R
    for k in range(min(5, steps)):  # warm-up on the same data (its result is discarded)
        student.sgd_step(theta, x[k], t[k], 1e-3, out=out)
    start = time.perf_counter()
    for k in range(steps):
        for lo in range(0, R, c):
            student.sgd_step(theta[lo:lo + c], x[k, lo:lo + c], t[k, lo:lo + c], 1e-3, out=out[lo:lo + c])
        theta, out = out, theta
    return R * steps / (time.perf_counter() - start), theta


def fused_step(W1, b1, W2, b2, W3, b3, x, t, gamma: float):
    """One SGD step of a 2-hidden-layer ReLU MLP over stacked chains (W `[R, out, in]`, x `[R, 1, d]`)."""
    z1 = torch.baddbmm(b1.unsqueeze(1), x, W1.transpose(1, 2))
    h1 = torch.relu(z1)
    z2 = torch.baddbmm(b2.unsqueeze(1), h1, W2.transpose(1, 2))
    h2 = torch.relu(z2)
    z3 = torch.baddbmm(b3.unsqueeze(1), h2, W3.transpose(1, 2))
    d3 = (torch.softmax(z3, -1) * t.sum(-1, keepdim=True) - t) * -gamma
    d2 = torch.bmm(d3, W3) * (z2 > 0)
    d1 = torch.bmm(d2, W2) * (z1 > 0)
    return (W1 + d1.transpose(1, 2) * x, b1 + d1[:, 0], W2 + d2.transpose(1, 2) * h1, b2 + d2[:, 0],
            W3 + d3.transpose(1, 2) * h2, b3 + d3[:, 0])


def fused_rate(fn, R: int, d: int, K: int, steps: int) -> float:
    g = torch.Generator().manual_seed(0)
    params = (0.1 * torch.randn(R, 128, d, generator=g), torch.zeros(R, 128), 0.1 * torch.randn(R, 128, 128, generator=g),
              torch.zeros(R, 128), 0.1 * torch.randn(R, K, 128, generator=g), torch.zeros(R, K))
    x = torch.randn(R, 1, d, generator=g)
    t = torch.nn.functional.one_hot(torch.randint(0, K, (R, 1), generator=g), K).float()
    for _ in range(3):
        fn(*params, x, t, 1e-3)
    start = time.perf_counter()
    for _ in range(steps):
        params = fn(*params, x, t, 1e-3)
    return R * steps / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--chains", type=int, default=64)
    ap.add_argument("--steps", type=int, default=512)
    ap.add_argument("--compile", action="store_true", help="also time torch.compile of the fused step (~25 s to compile)")
    ap.add_argument("--json", action="store_true", help="print one JSON object with every number as the last line")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    task = synthetic.make_task("paper", standardize=True)
    student = build_student("mlp", task, dtype=torch.float32)
    R = args.chains
    print(f"torch {torch.__version__}, 1 thread, 2x128 ReLU MLP (P = {student.num_params}), R = {R}, batch 1, float32\n")
    rows: dict[str, float] = {}
    base, theta = engine_rate(student, R, args.steps, None)
    rows["engine"] = base
    for c in (8, 16, 32):
        if c < R:
            rate, th = engine_rate(student, R, args.steps, c)
            assert torch.equal(th, theta), "chain blocks changed the result"
            rows[f"blocks of {c}"] = rate
    rows["eager step"] = fused_rate(fused_step, R, task.dim, task.num_classes, args.steps)
    compile_s = None
    if args.compile:
        start = time.perf_counter()
        compiled = torch.compile(fused_step, dynamic=False)
        rows["compiled step"] = fused_rate(compiled, R, task.dim, task.num_classes, args.steps)
        compile_s = time.perf_counter() - start
    print(f"{'path':<18}{'cs/s':>12}{'us/step':>10}{'vs engine':>11}")
    for name, rate in rows.items():
        print(f"{name:<18}{rate:>12,.0f}{R / rate * 1e6:>10,.0f}{rate / base:>10.2f}x")
    if compile_s is not None:
        print(f"\ntorch.compile: first call and timing took {compile_s:.1f} s")
    if args.json:
        print(json.dumps({"chains": R, "steps": args.steps, "cs_per_s": rows, "compile_seconds": compile_s}))


if __name__ == "__main__":
    main()
