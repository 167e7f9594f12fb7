"""airbench94 on this CPU: forward FLOPs per image and training throughput by precision and memory format.

Raw PyTorch train steps (forward, label-smoothed loss, backward, Nesterov SGD step) on random 32x32
batches, every configuration measured in one process, alternating configurations ``--repeats`` times
so that the shared machine's noise hits them all alike. Prints samples/s, the ratio to fp32 NCHW, and
what one CIFAR-10 epoch and the cifar10_fast recipe (``--epochs``) would take at the best rate.

    python benchmarks/airbench_speed.py --threads 1
    python benchmarks/airbench_speed.py --threads 2 --batch 1024 --steps 3 --repeats 2
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import zoo

CONFIGS = {  # name -> (channels_last, bf16 autocast)
    "fp32 NCHW": (False, False),
    "fp32 channels_last": (True, False),
    "bf16-mixed NCHW": (False, True),
    "bf16-mixed channels_last": (True, True),
}


def forward_gflops(model: torch.nn.Module) -> float:
    """Forward GFLOPs of one 3x32x32 image (convolutions and matmuls: 2 FLOPs a multiply-add)."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.eval()(torch.randn(1, 3, 32, 32))
    return counter.get_total_flops() / 1e9


def train_rate(channels_last: bool, bf16: bool, *, batch: int, steps: int) -> float:
    """Samples/s of ``steps`` timed train steps (after one untimed warm-up step)."""
    torch.manual_seed(0)
    model = zoo.create_model("airbench94").train()
    x = torch.randn(batch, 3, 32, 32)
    y = torch.randint(0, 10, (batch,))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.1, momentum=0.85, nesterov=True, weight_decay=1e-3)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    def step() -> None:
        with autocast:
            loss = F.cross_entropy(model(x), y, label_smoothing=0.2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return batch * steps / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--epochs", type=float, default=10.0, help="the recipe's length, for the time estimate")
    parser.add_argument("--configs", nargs="*", default=list(CONFIGS), choices=list(CONFIGS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    gflops = forward_gflops(zoo.create_model("airbench94"))
    print(f"airbench94: {gflops:.3f} GFLOPs forward per 32x32 image, ~{3 * gflops:.2f} per training image "
          f"(forward + backward); threads={args.threads}, batch={args.batch}")
    rates: dict[str, list[float]] = {name: [] for name in args.configs}
    for _ in range(args.repeats):
        for name in args.configs:
            rates[name].append(train_rate(*CONFIGS[name], batch=args.batch, steps=args.steps))
    base = statistics.median(rates[args.configs[0]])
    for name in args.configs:
        rate = statistics.median(rates[name])
        print(f"{name:>26}: {rate:7.1f} samples/s  ({rate / base:.2f}x {args.configs[0]}, "
              f"{3 * gflops * rate:5.1f} GFLOP/s)")
    best = max(args.configs, key=lambda n: statistics.median(rates[n]))
    rate = statistics.median(rates[best])
    epoch_s = 50_000 / rate
    print(f"at the best rate ({best}): one 50k-image epoch {epoch_s / 60:.1f} min, {args.epochs:g} epochs "
          f"{args.epochs * epoch_s / 60:.1f} min of training steps")


if __name__ == "__main__":
    main()
