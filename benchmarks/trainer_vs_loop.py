"""Training throughput of train.py's Trainer path against a plain hand-written PyTorch loop.

Same model, data, batch size, optimizer, schedule, channels-last and thread count, in one process,
alternating the two paths ``--repeats`` times; prints samples/s and the ratio (goal: >= 0.95).

    python benchmarks/trainer_vs_loop.py                   # lenet5/mnist and resnet20/cifar10
    python benchmarks/trainer_vs_loop.py --cases lenet5:mnist:300 --repeats 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir

from tasks.optim import build_optimizer, build_scheduler
from tasks.runner import build

CONF = str(Path(__file__).resolve().parents[1] / "conf")


def compose_cfg(model: str, data: str, steps: int, out: str):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose("train", overrides=[
            f"model={model}", f"data={data}", f"paths.output_dir={out}",
            "trainer.max_epochs=1", f"trainer.limit_train_batches={steps}", "trainer.limit_val_batches=1",
            "trainer.num_sanity_val_steps=0",
        ])


def trainer_path(cfg) -> float:
    """Samples/s of the training batches as train.py runs them (callbacks, logger, progress bar on).

    Validation and the checkpoint saved after it are per-epoch costs outside the timed window.
    """
    datamodule, task, trainer, speed = build(cfg)
    trainer.fit(task, datamodule=datamodule)
    return speed.samples_per_s


def plain_loop(cfg, steps: int) -> float:
    """The same work written by hand: whole batches, the same transform, forward/backward/step."""
    datamodule, task, _, _ = build(cfg)  # same seed, model, channels-last choice
    datamodule.setup("fit")
    model = task.model.train()
    opt = build_optimizer(model, **cfg.task.optimizer)
    sched = build_scheduler(opt, total_steps=steps, **cfg.task.scheduler)
    smoothing = cfg.task.get("label_smoothing", 0.0)
    loader = datamodule.train_dataloader()
    n, t0 = 0, time.perf_counter()
    for i, (x, y) in enumerate(loader):
        if i == steps:
            break
        x = task.to_model_input(datamodule.transform(x, train=True))
        loss = F.cross_entropy(model(x), y, label_smoothing=smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        n += len(y)
    return n / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", nargs="+", default=["lenet5:mnist:200", "resnet20:cifar10:25"],
                   help="model:data:steps")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    os.environ.setdefault("ZOO_DATA_DIR", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    torch.set_num_threads(args.threads)

    print(f"threads={args.threads} repeats={args.repeats} torch={torch.__version__}")
    for case in args.cases:
        model, data, steps = case.split(":")
        steps = int(steps)
        with tempfile.TemporaryDirectory() as out:
            cfg = compose_cfg(model, data, steps, out)
            bs = cfg.data.batch_size
            plain_loop(cfg, min(steps, 5))  # warm up kernels and the data cache
            lit, raw = [], []
            for _ in range(args.repeats):  # alternate, so drifts in machine load hit both paths
                lit.append(trainer_path(cfg))
                raw.append(plain_loop(cfg, steps))
        t, r = statistics.median(lit), statistics.median(raw)
        print(f"{model:>10s} / {data:<8s} batch {bs:4d}, {steps} steps: Trainer {t:8.0f} samples/s | "
              f"plain loop {r:8.0f} samples/s | ratio {t / r:.3f}  "
              f"(per-repeat ratios {', '.join(f'{a / b:.2f}' for a, b in zip(lit, raw, strict=True))})")


if __name__ == "__main__":
    main()
