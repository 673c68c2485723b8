#!/usr/bin/env python3
"""ATen operators one training step of ../shared/bench/byol_step.py dispatches (every thread),
the count `selfsup bench step --count-ops` prints for ours: each is a host dispatch, launched
kernel or not, so the number per step is the host's share of a step, which bounds a small model's
step on a GPU.

byol_step.py runs twice under torch.profiler (CPU activity: operator events on every thread),
with --warmup 1 and --steps N1 and N2; events named aten::* are counted, and the difference over
N2 - N1 is one step's (model construction, warm-up and the final read cancel).

    python3 bench/count_ops.py [--script PATH] -- [byol_step.py flags, e.g. --device cpu --width 16]
prints one line: RESULT byol_step ops_per_step=N (runs: N1 -> a, N2 -> b)
"""
import argparse
import os
import runpy
import sys

import torch
from torch.profiler import ProfilerActivity, profile

here = os.path.dirname(os.path.abspath(__file__))
ap = argparse.ArgumentParser()
ap.add_argument("--script", default=os.path.join(here, "..", "..", "shared", "bench", "byol_step.py"))
ap.add_argument("--n1", type=int, default=2)
ap.add_argument("--n2", type=int, default=4)
ap.add_argument("rest", nargs=argparse.REMAINDER)
a = ap.parse_args()
rest = [x for x in a.rest if x != "--"]


def aten_ops(steps):
    sys.argv = [a.script] + rest + ["--warmup", "1", "--steps", str(steps)]
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        runpy.run_path(a.script, run_name="__main__")
    return sum(1 for e in prof.events() if e.name.startswith("aten::"))


c1, c2 = aten_ops(a.n1), aten_ops(a.n2)
per_step = (c2 - c1) / (a.n2 - a.n1)
print(f"RESULT byol_step ops_per_step={per_step:.0f} (runs: {a.n1} steps -> {c1}, {a.n2} -> {c2}) torch={torch.__version__}")
