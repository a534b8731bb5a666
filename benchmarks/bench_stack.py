"""Stacked runs against the same runs one at a time: `sgd.run_many` vs a loop of `sgd.run`.

The configurations are F1's kind (paper task, 2x128 ReLU MLP, batch 1, momentum 0.9, float32, a
finite training set with epoch shuffling): `--runs` runs of `--chains` chains that differ in teacher
and seed, with the default instruments. Both sides make the same records (checked bit for bit), so
the ratio of the two wall times is the speed-up of stacking alone. A second case does the same for
the linear student (paper task, online).

Usage: python benchmarks/bench_stack.py [--runs N] [--chains R] [--steps S] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch

from bkd_theory import sgd

TEACHERS = ("onehot", "dirichlet:0.5", "dirichlet:5", "bcp")
MLP = dict(task="paper", standardize=True, student="mlp", gamma=5e-4, momentum=0.9, batch=1, init="random",
           dtype="float32", regime="finite", sampling="shuffle", noise="frozen", n=2000)
LINEAR = dict(task="paper", student="linear", gamma=0.05, batch=1, init="perturbed", dtype="float32")


def configs(base: dict, runs: int, chains: int, steps: int) -> list[dict]:
    return [{**base, "teacher": TEACHERS[i % len(TEACHERS)], "seed": i // len(TEACHERS), "chains": chains,
             "steps": steps, "eval_every": max(1, steps // 10)} for i in range(runs)]


def same(a, b) -> bool:
    return np.array_equal(a.theta_final, b.theta_final) and all(
        np.array_equal(a.records[q][1], b.records[q][1], equal_nan=True) for q in a.records)


def case(name: str, cfgs: list[dict]) -> dict:
    """Wall times (s) of the loop of `run` and of `run_many` on `cfgs`, their ratio, and equality."""
    start = time.perf_counter()
    alone = [sgd.run(**c) for c in cfgs]
    t_alone = time.perf_counter() - start
    start = time.perf_counter()
    stacked = sgd.run_many(cfgs)
    t_stack = time.perf_counter() - start
    equal = all(same(a, b) for a, b in zip(alone, stacked))
    cs = sum(c["chains"] * c["steps"] for c in cfgs)
    print(f"{name:<8}{len(cfgs):>5}{cfgs[0]['chains']:>7}{cfgs[0]['steps']:>7}{t_alone:>10.2f}{t_stack:>10.2f}"
          f"{t_alone / t_stack:>8.2f}x{cs / t_stack:>12,.0f}  {'yes' if equal else 'NO'}")
    return {"runs": len(cfgs), "chains": cfgs[0]["chains"], "steps": cfgs[0]["steps"], "alone_s": t_alone,
            "stacked_s": t_stack, "ratio": t_alone / t_stack, "stacked_cs_per_s": cs / t_stack, "identical": equal}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=8)
    ap.add_argument("--chains", type=int, default=6)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--json", action="store_true", help="print one JSON object with every number as the last line")
    args = ap.parse_args(argv)
    load0 = os.getloadavg()[0]
    print(f"torch {torch.__version__}, 1 thread; load average {load0:.2f} at the start\n")
    print(f"{'student':<8}{'runs':>5}{'R':>7}{'steps':>7}{'alone s':>10}{'stack s':>10}{'ratio':>9}{'stack cs/s':>12}  identical")
    out = {"mlp": case("mlp", configs(MLP, args.runs, args.chains, args.steps)),
           "linear": case("linear", configs(LINEAR, args.runs, 32, 4 * args.steps))}
    out["load"] = {"start": load0, "end": os.getloadavg()[0]}
    print(f"\nload average {out['load']['end']:.2f} at the end")
    if args.json:
        print(json.dumps(out))


if __name__ == "__main__":
    main()
