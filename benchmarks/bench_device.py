"""The engine table of `bench_engine.py` on a CUDA device, beside the same cases on the CPU.

Runs every engine case (linear and 2x128 MLP, numpy and torch feeds, float32, batch 1) with
`device="cuda"` and with `device="cpu"` in the same process, and prints chain-steps/s for both and
their ratio. Pages of inputs and targets are drawn on the CPU and copied (`engine.feed`), so both
devices train on the same data; results on a device are reproducible on that device.

When this machine has no CUDA device it says so and measures nothing (with --json the last line is
{"cuda": null, "reason": ...}).

Usage: python benchmarks/bench_device.py [--quick] [--device cuda:N] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_engine import cases, engine_rate  # noqa: E402  (the same cases and timing)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="the quick sizes of bench_engine.py")
    ap.add_argument("--device", default="cuda", help="the CUDA device to measure (default cuda)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="print one JSON object with every number as the last line")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        reason = (f"no CUDA device on this machine (torch {torch.__version__}, torch.cuda.is_available() is False): "
                  "nothing measured; the CPU table is benchmarks/bench_engine.py")
        print(reason)
        if args.json:
            print(json.dumps({"cuda": None, "reason": reason}))
        return
    torch.set_num_threads(1)
    name = torch.cuda.get_device_name(torch.device(args.device))
    print(f"torch {torch.__version__}, {args.device} = {name}; CPU with 1 thread; float32, batch 1, onehot targets\n")
    header = f"{'case':<26}{'R':>7}{'steps':>7}{'cpu cs/s':>14}{'cuda cs/s':>14}{'cuda / cpu':>12}"
    print(header)
    print("-" * len(header))
    out = {}
    for case in cases(args.quick):
        cpu, _ = engine_rate(case, args.seed, [], False, "cpu")
        gpu, _ = engine_rate(case, args.seed, [], False, args.device)
        print(f"{case.label:<26}{case.chains:>7}{case.steps:>7}{cpu:>14,.0f}{gpu:>14,.0f}{gpu / cpu:>11.2f}x")
        out[case.label] = {"cpu_cs_per_s": cpu, "cuda_cs_per_s": gpu, "ratio": gpu / cpu, "chains": case.chains,
                           "steps": case.steps, "feed": case.feed}
    if args.json:
        print(json.dumps({"cuda": name, "device": args.device, "cases": out}))


if __name__ == "__main__":
    main()
