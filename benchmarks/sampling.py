"""Sampling time of the DDPM: 64 images by ancestral sampling (1000 steps) against DDIM (50 steps).

The network's cost does not depend on its weights, so a randomly initialised ``ddpm`` at its default size
(conf/model/ddpm.yaml, MNIST's 1x28x28) is timed unless ``--ckpt`` names a trained checkpoint. The two
samplers alternate (``--repeats`` rounds); each time is the median. DDIM's cost is steps / T of the
ancestral sampler's, plus nothing: one network call per step either way.

    python benchmarks/sampling.py                              # 64 images, ddpm 1000 vs ddim 50, 1 thread
    python benchmarks/sampling.py --ckpt CKPT --ddim-steps 20 50 100
    python benchmarks/sampling.py --no-ddpm --bf16          # DDIM 50 in float32 and under bf16 autocast
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import zoo


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _autocast(fn) -> None:
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fn()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", default=None, help="a ddpm checkpoint (default: random weights, default size)")
    parser.add_argument("--num", type=int, default=64, help="images per sample call (default 64)")
    parser.add_argument("--ddim-steps", type=int, nargs="+", default=[50])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-ddpm", action="store_true", help="skip the 1000-step ancestral sampler")
    parser.add_argument("--bf16", action="store_true",
                        help="also time each sampler under bf16 autocast (what a bf16-mixed run samples in)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = zoo.load_model(args.ckpt) if args.ckpt else zoo.create_model("ddpm").eval()
    g = torch.Generator().manual_seed(0)
    model.sample(2, steps=2, generator=g)  # warm-up: first calls pick kernels
    runs = {} if args.no_ddpm else {f"ddpm {model.num_steps} steps": lambda: model.sample(
        args.num, sampler="ddpm", generator=g)}
    for s in args.ddim_steps:
        runs[f"ddim {s} steps"] = lambda s=s: model.sample(args.num, sampler="ddim", steps=s, generator=g)
    if args.bf16:
        for name, fn in list(runs.items()):
            runs[f"{name} bf16"] = lambda fn=fn: _autocast(fn)
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(args.repeats):
        for name, fn in runs.items():
            times[name].append(_time(fn))
    print(f"{args.num} images, {zoo.count_params(model):,} parameters, {args.threads} thread(s)")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"  {name:>23s}: {med:8.1f} s  ({med / args.num * 1000:.0f} ms an image)")
    for name in [n for n in times if n.endswith(" bf16")]:
        base = statistics.median(times[name[:-5]])
        print(f"  {name[:-5]}: bf16 autocast is {base / statistics.median(times[name]):.2f}x the float32 speed")


if __name__ == "__main__":
    main()
