"""Training throughput of train.py's Trainer path against a plain hand-written PyTorch loop.

Same model, data, batch size, optimizer, schedule, channels-last and thread count, in one process,
alternating the two paths ``--repeats`` times (A-B, then B-A); prints samples/s and the median of the per-repeat ratios (goal: >= 0.97).

    python benchmarks/trainer_vs_loop.py                   # lenet5/mnist and resnet20/cifar10
    python benchmarks/trainer_vs_loop.py --cases lenet5:mnist:300 --repeats 5
    python benchmarks/trainer_vs_loop.py --device cuda --cases lenet5:mnist:300   # trainer=gpu (bf16-mixed)
    python benchmarks/trainer_vs_loop.py --floor           # also Lightning's own per-step floor, and the best
                                                           # ratio it leaves each case

With ``--device cuda`` the Trainer path is ``trainer=gpu`` and the plain loop does the same on the GPU:
the data copied there once and sliced there, bf16 autocast when the config's precision says so, and the
clock read after the GPU has finished.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tasks/ runs from the checkout (only zoo is installed)

from tasks.data.loader import TensorBatchLoader
from tasks.optim import build_optimizer, build_scheduler
from tasks.precision import resolve_precision
from tasks.runner import build

CONF = str(Path(__file__).resolve().parents[1] / "conf")


def compose_cfg(model: str, data: str, steps: int, out: str, device: str = "cpu"):
    trainer = ["trainer=gpu"] if torch.device(device).type == "cuda" else []
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose("train", overrides=[
            f"model={model}", f"data={data}", f"paths.output_dir={out}", *trainer,
            "trainer.max_epochs=1", f"trainer.limit_train_batches={steps}", "trainer.limit_val_batches=1",
            "trainer.num_sanity_val_steps=0",
        ])
    # bf16-auto -> what the Trainer will run (bf16-mixed or 32-true): the plain loop and the template do the same
    cfg.trainer.precision = resolve_precision(cfg.trainer.precision, str(cfg.trainer.accelerator))
    return cfg


def trainer_path(cfg) -> float:
    """Samples/s of the training batches as train.py runs them (callbacks, logger, progress bar on).

    Validation and the checkpoint saved after it are per-epoch costs outside the timed window.
    """
    datamodule, task, trainer, speed = build(cfg)
    trainer.fit(task, datamodule=datamodule)
    return speed.samples_per_s


def plain_loop(cfg, steps: int, device: str = "cpu") -> float:
    """The same work written by hand: whole batches, the same transform, forward/backward/step."""
    device = torch.device(device)
    datamodule, task, _, _ = build(cfg)  # same seed, model, channels-last choice
    datamodule.setup("fit")
    model = task.model.train().to(device)
    opt = build_optimizer(model, **cfg.task.optimizer)
    sched = build_scheduler(opt, total_steps=steps, **cfg.task.scheduler)
    smoothing = cfg.task.get("label_smoothing", 0.0)
    loader = TensorBatchLoader(*datamodule.train_set, batch_size=datamodule.batch_size, shuffle=True,
                               drop_last=True, seed=datamodule.seed, device=device)
    bf16 = str(cfg.trainer.precision).startswith("bf16")
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    n, t0 = 0, time.perf_counter()
    for i, (x, y) in enumerate(loader):
        if i == steps:
            break
        x = task.to_model_input(datamodule.transform(x, train=True))
        with autocast:
            loss = F.cross_entropy(model(x), y, label_smoothing=smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        n += len(y)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return n / (time.perf_counter() - t0)


class GcPauses:
    """Milliseconds the garbage collector ran, by generation, while it is active (``--gc``)."""

    def __init__(self) -> None:
        self.ms = [0.0, 0.0, 0.0]
        self._t0 = 0.0

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
        else:
            self.ms[info["generation"]] += (time.perf_counter() - self._t0) * 1e3

    def __enter__(self) -> GcPauses:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)


class _Tiny(L.LightningModule):
    """Almost no compute: what a step costs in a bare Trainer is Lightning's own loop."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Linear(4, 2)

    def training_step(self, batch, batch_idx):
        return F.cross_entropy(self.net(batch[0]), batch[1])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


class _Batches:
    """The batches as one loader (a plain list would be taken for a list of loaders, one per batch)."""

    def __init__(self, batches: list) -> None:
        self.batches = batches

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class _EpochClock(L.Callback):
    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.t0 = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.seconds = time.perf_counter() - self.t0


def lightning_floor(steps: int = 500, repeats: int = 5) -> tuple[float, float]:
    """(bare Trainer, plain loop) milliseconds a step for a model with almost no compute.

    The bare Trainer has no logger, progress bar, checkpointing or callback but a clock: the per-step cost of
    Lightning's fit loop itself (fetching, batch-transfer hooks, the optimisation closure, callback dispatch,
    progress tracking), which any Trainer-based path pays on top of the same work in a hand-written loop.
    """
    batches = [(torch.randn(8, 4), torch.randint(0, 2, (8,))) for _ in range(steps)]
    bare, plain = [], []
    for _ in range(repeats):
        clock = _EpochClock()
        trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False, callbacks=[clock])
        trainer.fit(_Tiny(), train_dataloaders=_Batches(batches))
        bare.append(clock.seconds / steps * 1e3)
        net = torch.nn.Linear(4, 2)
        opt = torch.optim.SGD(net.parameters(), lr=0.01)
        t0 = time.perf_counter()
        for x, y in batches:
            loss = F.cross_entropy(net(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        plain.append((time.perf_counter() - t0) / steps * 1e3)
    return statistics.median(bare), statistics.median(plain)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", nargs="+", default=["lenet5:mnist:200", "resnet20:cifar10:25"],
                   help="model:data:steps")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="cpu or cuda (the Trainer path then runs trainer=gpu)")
    p.add_argument("--floor", action="store_true",
                   help="also measure Lightning's own per-step cost (a bare Trainer on a model with almost no "
                        "compute) and the best ratio it leaves each case")
    p.add_argument("--gc", action="store_true",
                   help="also print the garbage collector's pauses in each path (the Trainer path's whole call: "
                        "set-up, training, its validation batch and checkpoint)")
    args = p.parse_args()
    if not os.environ.get("ZOO_DATA_DIR"):
        sys.exit("set ZOO_DATA_DIR to the data root (README: Data)")
    torch.set_num_threads(args.threads)

    where = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "cpu"
    print(f"threads={args.threads} repeats={args.repeats} torch={torch.__version__} device={args.device} ({where})")
    floor = None
    if args.floor:
        bare, plain = lightning_floor()
        floor = bare - plain
        print(f"Lightning's own loop: bare Trainer {bare:.3f} ms/step, plain loop {plain:.3f} ms/step (a model with "
              f"almost no compute): {floor:.3f} ms a step that no Trainer-based path avoids")
    for case in args.cases:
        model, data, steps = case.split(":")
        steps = int(steps)
        with tempfile.TemporaryDirectory() as out:
            cfg = compose_cfg(model, data, steps, out, args.device)
            bs = cfg.data.batch_size
            plain_loop(cfg, min(steps, 5), args.device)  # warm up kernels and the data cache
            lit, raw, lit_gc, raw_gc = [], [], [], []
            paths = {"trainer": (partial(trainer_path, cfg), lit, lit_gc),
                     "plain": (partial(plain_loop, cfg, steps, args.device), raw, raw_gc)}
            for i in range(args.repeats):  # alternate, A-B then B-A, so drifts in machine load hit both paths
                for name in (("trainer", "plain") if i % 2 == 0 else ("plain", "trainer")):
                    measure, rates, gc_ms = paths[name]
                    with GcPauses() as pauses:
                        rates.append(measure())
                    gc_ms.append(pauses.ms)
        t, r = statistics.median(lit), statistics.median(raw)
        ratios = [a / b for a, b in zip(lit, raw, strict=True)]  # pair by pair: each pair ran back to back
        print(f"{model:>10s} / {data:<8s} batch {bs:4d}, {steps} steps: Trainer {t:8.0f} samples/s | "
              f"plain loop {r:8.0f} samples/s | median ratio {statistics.median(ratios):.3f}  "
              f"(per-repeat ratios {', '.join(f'{x:.2f}' for x in ratios)}; ratio of the medians {t / r:.3f})")
        if args.gc:
            def pauses(runs: list[list[float]]) -> str:
                return ", ".join(f"gen{g} {statistics.median(r[g] for r in runs):.1f}" for g in range(3))
            print(f"{'':>10s}   garbage collection, median ms a repeat: Trainer path {pauses(lit_gc)} | "
                  f"plain loop {pauses(raw_gc)}")
        if floor is not None:
            step = bs / r * 1e3
            print(f"{'':>10s}   plain step {step:.2f} ms; with Lightning's floor added the best ratio is "
                  f"{step / (step + floor):.3f}; this path's remaining overhead {bs / t * 1e3 - step - floor:+.3f} ms a step")


if __name__ == "__main__":
    main()
