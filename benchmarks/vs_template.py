"""Training throughput of the zoo against the pipeline a lightning-hydra-template user writes for the same job.

Same model, data (the zoo's training split), batch size, optimizer and schedule, loss, precision and
thread count, in one process, alternating the two ``--repeats`` times; prints samples/s of the training
batches (data loading included, validation excluded: the zoo's ``SpeedMonitor`` times both) and the ratio
zoo / template. Goals: >= 2.0x on lenet5/MNIST, >= 1.3x on resnet20/CIFAR-10.

zoo       train.py's Trainer path, built as benchmarks/trainer_vs_loop.py builds it: uint8 images in memory,
          whole batches sliced from a permutation, normalisation and augmentation on the batch, channels-last
          for conv nets, training scalars logged every ``log_every_n_steps``, the zoo's callbacks and CSV logger.
template  the lightning-hydra-template's MNISTDataModule / MNISTLitModule pattern: torchvision dataset objects
          whose ``__getitem__`` makes a PIL image per sample, per-sample transforms (``ToTensor``,
          ``Normalize``; for CIFAR ``RandomCrop(32, padding=4)`` and ``RandomHorizontalFlip`` first), a
          ``DataLoader`` with default collation and ``num_workers=0``, Lightning's default callbacks (TQDM
          progress bar, ModelCheckpoint, model summary) and a CSV logger, ``MeanMetric``/``Accuracy`` updated
          and ``self.log(..., prog_bar=True)`` every step, NCHW.

The template's datasets are torchvision's own classes (``MNIST``, ``CIFAR10``) and their ``__getitem__``;
only their file reading is skipped: torchvision's MNIST wants the uncompressed files written into the data
root (which the zoo never writes to) and its CIFAR-10 check wants upstream md5s (the shared copy is a
verified rebuild, README "Data"), so they are given the very uint8 arrays the zoo reads. Both paths' progress
bars write to /dev/null while timed (a terminal costs the template's per-step redraw more).

    python benchmarks/vs_template.py --threads 1
    python benchmarks/vs_template.py --cases lenet5:mnist:200 --repeats 5
    python benchmarks/vs_template.py --device cuda --cases lenet5:mnist:300
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import statistics
import sys
import tempfile
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader
from torchmetrics import MeanMetric
from torchmetrics.classification import Accuracy
from torchvision import datasets as tvd
from torchvision import transforms as T

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]  # tasks/ is not installed with zoo; trainer_vs_loop beside
from trainer_vs_loop import compose_cfg, trainer_path  # noqa: E402  (the zoo's path, as measured there)

from tasks.callbacks import SpeedMonitor  # noqa: E402
from tasks.optim import build_optimizer, build_scheduler  # noqa: E402
from tasks.runner import build  # noqa: E402


def template_dataset(dataset: str, images: torch.Tensor, labels: torch.Tensor, *, mean, std, train: bool):
    """torchvision's dataset class for ``dataset`` over the zoo's uint8 arrays, with the template's transforms."""
    normalize = [T.ToTensor(), T.Normalize(mean, std)]
    if dataset.startswith("cifar"):
        augment = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()] if train else []
        cls, transform = tvd.CIFAR10, T.Compose([*augment, *normalize])
    else:
        cls, transform = tvd.MNIST, T.Compose(normalize)
    ds = cls.__new__(cls)  # torchvision's class and __getitem__, without its file reading (see the docstring)
    tvd.VisionDataset.__init__(ds, root=None, transform=transform)
    ds.train = True
    if cls is tvd.MNIST:
        ds.data, ds.targets = images[:, 0], labels  # (N, 28, 28) uint8 tensor, as torchvision holds it
    else:
        ds.data, ds.targets = images.permute(0, 2, 3, 1).numpy(), labels.tolist()  # (N, 32, 32, 3) uint8 array
    return ds


class TemplateModule(L.LightningModule):
    """lightning-hydra-template's MNISTLitModule: metrics objects updated and logged every step."""

    def __init__(self, net: torch.nn.Module, cfg, num_classes: int) -> None:
        super().__init__()
        self.net, self.cfg = net, cfg
        self.train_loss, self.val_loss = MeanMetric(), MeanMetric()
        self.train_acc = Accuracy(task="multiclass", num_classes=num_classes)
        self.val_acc = Accuracy(task="multiclass", num_classes=num_classes)
        self.smoothing = cfg.task.get("label_smoothing", 0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def model_step(self, batch):
        x, y = batch
        logits = self.forward(x)
        loss = F.cross_entropy(logits, y, label_smoothing=self.smoothing)
        return loss, logits.argmax(dim=1), y

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss, preds, targets = self.model_step(batch)
        self.train_loss(loss)
        self.train_acc(preds, targets)
        self.log("train/loss", self.train_loss, on_step=False, on_epoch=True, prog_bar=True)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        loss, preds, targets = self.model_step(batch)
        self.val_loss(loss)
        self.val_acc(preds, targets)
        self.log("val/loss", self.val_loss, on_step=False, on_epoch=True, prog_bar=True)
        self.log("val/acc", self.val_acc, on_step=False, on_epoch=True, prog_bar=True)

    def configure_optimizers(self):
        opt = build_optimizer(self.net, **self.cfg.task.optimizer)  # the zoo's: the same work per step
        sched = build_scheduler(opt, total_steps=self.trainer.estimated_stepping_batches, **self.cfg.task.scheduler)
        if sched is None:
            return opt
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def template_path(cfg, steps: int, out: str, accelerator: str) -> float:
    """Samples/s of the template's training batches (its own DataModule-less loaders, same split)."""
    datamodule, task, _, _ = build(cfg)  # same seed and the same freshly initialised model as the zoo's
    datamodule.setup("fit")
    spec = datamodule.spec
    train = template_dataset(datamodule.dataset, *datamodule.train_set, mean=spec.mean, std=spec.std, train=True)
    val = template_dataset(datamodule.dataset, *datamodule.val_set, mean=spec.mean, std=spec.std, train=False)
    bs = datamodule.batch_size
    net = task.model.to(memory_format=torch.contiguous_format)  # NCHW, as the template runs
    module = TemplateModule(net, cfg, datamodule.num_classes)
    speed = SpeedMonitor()
    trainer = L.Trainer(accelerator=accelerator, devices=1, max_epochs=1, limit_train_batches=steps,
                        limit_val_batches=1, num_sanity_val_steps=0, precision=cfg.trainer.precision,
                        logger=CSVLogger(out, name="template"), default_root_dir=out, callbacks=[speed])
    trainer.fit(module, train_dataloaders=DataLoader(train, batch_size=bs, shuffle=True, num_workers=0),
                val_dataloaders=DataLoader(val, batch_size=bs, shuffle=False, num_workers=0))
    return speed.samples_per_s


@contextlib.contextmanager
def quiet():
    """Progress bars, model summaries and Lightning's notices to /dev/null (both paths alike)."""
    lightning_log = logging.getLogger("lightning.pytorch")
    level = lightning_log.level
    lightning_log.setLevel(logging.WARNING)
    try:
        with open(os.devnull, "w") as null, contextlib.redirect_stderr(null), contextlib.redirect_stdout(null):
            yield
    finally:
        lightning_log.setLevel(level)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", nargs="+", default=["lenet5:mnist:200", "resnet20:cifar10:12"], help="model:data:steps")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="cpu or cuda (the zoo then runs trainer=gpu)")
    args = p.parse_args()
    if not os.environ.get("ZOO_DATA_DIR"):
        sys.exit("set ZOO_DATA_DIR to the data root (README: Data)")
    torch.set_num_threads(args.threads)
    accelerator = "gpu" if args.device.startswith("cuda") else "cpu"

    print(f"threads={args.threads} repeats={args.repeats} device={args.device} torch={torch.__version__} "
          f"lightning={L.__version__}")
    for case in args.cases:
        model, data, steps = case.split(":")
        steps = int(steps)
        with tempfile.TemporaryDirectory() as out:
            cfg = compose_cfg(model, data, steps, out, args.device)
            zoo, tpl = [], []
            with quiet():
                trainer_path(compose_cfg(model, data, 2, out, args.device))  # warm up: kernels, data caches
                template_path(cfg, 2, out, accelerator)
                for _ in range(args.repeats):  # alternate, so drifts in machine load hit both paths
                    zoo.append(trainer_path(cfg))
                    tpl.append(template_path(cfg, steps, out, accelerator))
        z, t = statistics.median(zoo), statistics.median(tpl)
        print(f"{model:>10s} / {data:<8s} batch {cfg.data.batch_size:4d}, {cfg.trainer.precision}, {steps} steps: "
              f"zoo {z:8.0f} samples/s | template {t:8.0f} samples/s | ratio {z / t:.2f}x  "
              f"(per-repeat {', '.join(f'{a / b:.2f}' for a, b in zip(zoo, tpl, strict=True))})", flush=True)


if __name__ == "__main__":
    main()
