"""airbench94 on this CPU: forward FLOPs per image and training throughput by precision and memory format.

Raw PyTorch train steps (forward, label-smoothed loss, backward, Nesterov SGD step) on random 32x32
batches, every configuration measured in one process, alternating configurations ``--repeats`` times
so that the shared machine's noise hits them all alike. Prints samples/s, the ratio to fp32 NCHW, and
what one CIFAR-10 epoch and the cifar10_fast recipe (``--epochs``) would take at the best rate.
``--model`` measures another CIFAR-shaped registry model (resnet20); ``--device cuda`` a GPU (random
tensors made on the GPU; the timing waits for the GPU to finish).

    python benchmarks/airbench_speed.py --threads 1
    python benchmarks/airbench_speed.py --threads 2 --batch 1024 --steps 3 --repeats 2
    python benchmarks/airbench_speed.py --device cuda --steps 50 --repeats 3
    python benchmarks/airbench_speed.py --device cuda --model resnet20 --batch 256 --steps 50
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


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def forward_gflops(model: torch.nn.Module) -> float:
    """Forward GFLOPs of one 3x32x32 image (convolutions and matmuls: 2 FLOPs a multiply-add)."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.eval()(torch.randn(1, 3, 32, 32))
    return counter.get_total_flops() / 1e9


def train_rate(channels_last: bool, bf16: bool, *, batch: int, steps: int, model_name: str = "airbench94",
               device: torch.device | str = "cpu") -> float:
    """Samples/s of ``steps`` timed train steps (after untimed warm-up steps: one, three on a GPU)."""
    torch.manual_seed(0)
    device = torch.device(device)
    model = zoo.create_model(model_name).train().to(device)
    x = torch.randn(batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.1, momentum=0.85, nesterov=True, weight_decay=1e-3)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    def step() -> None:
        with autocast:
            loss = F.cross_entropy(model(x), y, label_smoothing=0.2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3 if device.type == "cuda" else 1):  # cuDNN's algorithm search happens in the first steps
        step()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return batch * steps / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--epochs", type=float, default=10.0, help="the recipe's length, for the time estimate")
    parser.add_argument("--configs", nargs="*", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--model", default="airbench94", help="a registry model for 3x32x32 images (resnet20, ...)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as trainer=gpu sets it (conf/trainer/gpu.yaml)

    gflops = forward_gflops(zoo.create_model(args.model))
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"threads={args.threads}"
    print(f"{args.model}: {gflops:.3f} GFLOPs forward per 32x32 image, ~{3 * gflops:.2f} per training image "
          f"(forward + backward); {where}, batch={args.batch}, random CIFAR-shaped tensors on {device}")
    rates: dict[str, list[float]] = {name: [] for name in args.configs}
    for _ in range(args.repeats):
        for name in args.configs:
            rates[name].append(train_rate(*CONFIGS[name], batch=args.batch, steps=args.steps,
                                          model_name=args.model, device=device))
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
