"""The Python side of ``benchmarks/gpu_check.sh``: packages for a bare GPU machine, and a run of every family.

Sub-commands (``python benchmarks/gpu_check.py COMMAND --help``):

    packages                  the ``dist==version`` pins the GPU machine may lack (read by gpu_wheels.sh)
    install --wheels W --target T    install the missing ones (and other versions of the project's stack)
                              from W into T (no index, no dependencies)
    families [--accelerator gpu] [--precision bf16-mixed] [--only rnn,vae] [--dry-run]
                              fast_dev_run of every registered family, one run per task kind it trains
    metrics FILE              train_time_s and the test metrics of a run's metrics.json

Until ``install`` has run, this file may import nothing outside the standard library: the GPU machine's
own Python has torch and torchvision but may lack Hydra, OmegaConf, Lightning, ... (``PACKAGES``).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import platform
import subprocess
import sys
import tempfile
import time
import traceback
import zipfile
from pathlib import Path

# (import name, distribution, compiled?) - what the project imports beyond torch/torchvision/numpy/Pillow,
# and what those import (measured: the train.py run and every task import with nothing else installed).
# Never torch, torchvision or anything that pulls them: the GPU machine's own builds stay.
PACKAGES = [
    ("hydra", "hydra-core", False),
    ("omegaconf", "omegaconf", False),
    ("antlr4", "antlr4-python3-runtime", False),  # hydra's pin 4.9.*: an sdist only; gpu_wheels.sh builds it
    ("yaml", "PyYAML", True),
    ("lightning", "lightning", False),
    ("lightning_utilities", "lightning-utilities", False),
    ("torchmetrics", "torchmetrics", False),
    ("tqdm", "tqdm", False),
    ("packaging", "packaging", False),
    ("fsspec", "fsspec", False),
    ("typing_extensions", "typing_extensions", False),
    ("timm", "timm", False),  # huggingface_hub and safetensors are optional for it: not brought
    ("tokenizers", "tokenizers", True),  # one abi3 wheel serves every CPython >= 3.9
    ("sacrebleu", "sacrebleu", False),  # seq2seq's test BLEU; imports the four below at import time
    ("portalocker", "portalocker", False),
    ("tabulate", "tabulate", False),
    ("colorama", "colorama", False),
    ("regex", "regex", True),
    ("lxml", "lxml", True),
]

# The project's own stack: a version other than the one tested here (its wheel's) is replaced, not kept,
# since the code uses recent APIs (Lightning's EMAWeightAveraging, ...). Other packages are only added when
# missing; compiled ones are never replaced.
STACK = ("hydra-core", "omegaconf", "antlr4-python3-runtime", "lightning", "lightning-utilities", "torchmetrics",
         "timm", "sacrebleu")

# The data each task kind runs on in the family sweep: small sets that travel to the GPU machine (with
# ``gpu_check.sh prepare``). Image classification on MNIST (the CIFAR-10 batches are too big to carry).
KIND_DATA = {"classify": "mnist", "lm": "tiny_shakespeare", "forecast": "etth1", "seq2seq": "multi30k",
             "embed": "word2vec", "generate": "mnist", "reconstruct": "mnist", "denoise": "mnist",
             "regress": "concrete"}
TEXT_CLASSIFY_DATA = "sst2"
DATA_FILES = ["MNIST/raw/train-images-idx3-ubyte.gz", "MNIST/raw/train-labels-idx1-ubyte.gz",
              "MNIST/raw/t10k-images-idx3-ubyte.gz", "MNIST/raw/t10k-labels-idx1-ubyte.gz",
              "tiny_shakespeare/input.txt", "ETT/ETTh1.csv", "sst2/train.tsv", "sst2/dev.tsv",
              "multi30k/train.de", "multi30k/train.en", "multi30k/val.de", "multi30k/val.en",
              "multi30k/test_2016_flickr.de", "multi30k/test_2016_flickr.en",
              "tabular/concrete.csv"]
MANIFEST = "checksums.sha256"


# -- packages ---------------------------------------------------------------------------------------------

def pins() -> list[str]:
    """``dist==version`` of every package in ``PACKAGES``, at the versions installed here (tested here)."""
    return [f"{dist}=={importlib.metadata.version(dist)}" for _, dist, _ in PACKAGES]


def packages_to_install(wheels: Path) -> list[tuple[str, str]]:
    """``(distribution, why)`` of each package to install: missing here, or of ``STACK`` at another version."""
    todo = []
    for module, dist, _ in PACKAGES:
        wheel = wheel_for(dist, wheels)
        tested = wheel.name.split("-")[1] if wheel else None
        if importlib.util.find_spec(module) is None:
            todo.append((dist, "missing"))
        elif dist in STACK and tested and _version(dist) != tested:
            todo.append((dist, f"{_version(dist)} here, {tested} tested"))
    return todo


def _wheel_fits(name: str) -> bool:
    """Whether a wheel's tags fit this interpreter and machine (pure, abi3 or this CPython; this arch)."""
    parts = name[: -len(".whl")].split("-")
    pyt, abi, plat = parts[-3], parts[-2], parts[-1]
    cp = f"cp{sys.version_info.major}{sys.version_info.minor}"
    if plat != "any" and not (plat.startswith(("manylinux", "linux")) and plat.endswith(platform.machine())):
        return False
    if abi == "none":
        return any(t.startswith("py3") or t == cp for t in pyt.split("."))
    if abi == "abi3":
        return any(t.startswith("cp3") and int(t[3:]) <= sys.version_info.minor for t in pyt.split("."))
    return cp in abi.split(".")


def wheel_for(dist: str, wheels: Path) -> Path | None:
    """The wheel of ``dist`` in ``wheels`` that fits this interpreter (None: none does)."""
    stem = dist.replace("-", "_").lower()
    found = [w for w in sorted(wheels.glob("*.whl")) if w.name.split("-")[0].lower() == stem and _wheel_fits(w.name)]
    return found[-1] if found else None


def install(wheels: Path, target: Path, *, dry_run: bool = False) -> list[str]:
    """Install what :func:`packages_to_install` lists from ``wheels`` into ``target`` (to go first on
    PYTHONPATH); the wheels' names."""
    todo = packages_to_install(wheels)
    kept = [d for _, d, _ in PACKAGES if d not in dict(todo)]
    print(f"python {platform.python_version()} ({sys.executable}); kept: "
          + ", ".join(f"{d} {_version(d)}" for d in kept))
    if not todo:
        print("nothing to install")
        return []
    print("to install: " + ", ".join(f"{d} ({why})" for d, why in todo))
    chosen, lacking = [], []
    for dist, _ in todo:
        w = wheel_for(dist, wheels)
        (chosen if w else lacking).append(w or dist)
    if lacking:
        print(f"WARNING: no wheel in {wheels} fits this Python for: {', '.join(lacking)} (run "
              "benchmarks/gpu_wheels.sh with --python for this version); what needs them will fail")
    print(f"installing into {target}: " + ", ".join(w.name for w in chosen))
    if dry_run or not chosen:
        return [w.name for w in chosen]
    target.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--no-compile",
           "--disable-pip-version-check", "--target", str(target), *map(str, chosen)]
    if importlib.util.find_spec("pip") is None or subprocess.run(pip).returncode != 0:
        print("pip unavailable or failed: unpacking the wheels instead")
        for w in chosen:  # a wheel is a zip of the files site-packages would hold
            with zipfile.ZipFile(w) as z:
                z.extractall(target)
    return [w.name for w in chosen]


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "?"


# -- the family sweep -------------------------------------------------------------------------------------

def family_runs() -> list[dict[str, str]]:
    """One fast_dev_run per registered family and task kind it trains: ``{family, kind, model, data}``.

    The model is the family's first (by name) that trains the kind. Image models' generative kinds
    (generate, reconstruct, denoise) make one run: the data's classification task is replaced by the task
    the model implies (tasks.resolve).
    """
    import zoo

    runs, seen = [], set()
    for name in sorted(zoo.list_models()):
        info = zoo.model_info(name)
        for kind in info.tasks:
            if kind not in KIND_DATA:
                continue
            image = info.modality == "image"
            key = (info.family, "generative" if image and kind in ("generate", "reconstruct", "denoise") else kind)
            if key in seen:
                continue
            seen.add(key)
            data = TEXT_CLASSIFY_DATA if kind == "classify" and not image else KIND_DATA[kind]
            runs.append({"family": info.family, "kind": key[1], "model": name, "data": data})
    return sorted(runs, key=lambda r: (r["family"], r["kind"]))


def run_overrides(run: dict[str, str], *, out: Path, accelerator: str, precision: str,
                  extra: list[str] = ()) -> list[str]:
    trainer = "trainer=gpu" if accelerator == "gpu" else "trainer=default"
    return [f"model={run['model']}", f"data={run['data']}", trainer, f"trainer.accelerator={accelerator}",
            f"trainer.precision={precision}", "trainer.fast_dev_run=true", "callbacks.progress_bar=null",
            f"paths.output_dir={out / (run['family'] + '-' + run['kind'])}", *extra]


def families(*, accelerator: str, precision: str, only: list[str] | None, dry_run: bool, out: Path,
             extra: list[str] = (), on_device: bool | None = None) -> int:
    """Run every family's fast_dev_run in this process; print one line each and a summary; the failures.

    ``on_device=True`` keeps the data on the trainer's device on a CPU too (the GPU path's code, no copy).
    """
    runs = [r for r in family_runs() if not only or r["family"] in only or r["kind"] in only]
    print(f"{len(runs)} fast_dev_runs ({accelerator}, {precision}): "
          + ", ".join(f"{r['family']}/{r['kind']}" for r in runs), flush=True)
    if dry_run:
        for r in runs:
            print("  python train.py " + " ".join(run_overrides(r, out=out, accelerator=accelerator,
                                                                precision=precision, extra=extra)))
        return 0
    import lightning as L
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    import tasks.runner
    from tasks.config import CONF_DIR
    from tasks.resolve import resolve_config

    if on_device is not None:
        from tasks.data.text_base import TextDataModule
        from tasks.data.timeseries import ForecastingDataModule
        from tasks.data.vision import VisionDataModule

        for cls in (VisionDataModule, TextDataModule, ForecastingDataModule):
            cls.on_device = on_device
    held = {"device": "?"}

    class DataDeviceProbe(L.Callback):
        """Where the training loader keeps its tensors (the GPU path: on the GPU, so no per-batch copy)."""

        def on_train_start(self, trainer, pl_module) -> None:
            loader = trainer.train_dataloader
            tensors = getattr(loader, "tensors", None) or (getattr(loader, "data", None),)
            held["device"] = str(tensors[0].device) if tensors[0] is not None else type(loader).__name__

    build = tasks.runner.build

    def build_with_probe(cfg):
        datamodule, task, trainer, speed = build(cfg)
        trainer.callbacks.append(DataDeviceProbe())
        return datamodule, task, trainer, speed

    tasks.runner.build = build_with_probe  # run() looks build up in its module at each call
    failed = 0
    for r in runs:
        overrides = run_overrides(r, out=out, accelerator=accelerator, precision=precision, extra=extra)
        t0 = time.perf_counter()
        held["device"] = "?"
        try:
            GlobalHydra.instance().clear()
            with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
                cfg = resolve_config(compose("train", overrides=overrides), overrides=overrides).cfg
                metrics = tasks.runner.run(cfg)
            shown = "  ".join(f"{k}={v:.4g}" for k, v in metrics.items()
                              if k.startswith("test/") and isinstance(v, (int, float)))
            status = "ok"
        except Exception as e:  # noqa: BLE001 - one family's failure must not hide the others
            failed += 1
            status, shown = "FAIL", f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            traceback.print_exc()
        print(f"{status:4s} {r['family']:>12s} {r['kind']:<10s} {r['model']:<22s} {r['data']:<16s} "
              f"{time.perf_counter() - t0:6.1f}s  data on {held['device']:<7s} {shown}", flush=True)
    print(f"fast_dev_run, {accelerator}, {precision}: {len(runs) - failed}/{len(runs)} ok")
    tasks.runner.build = build
    return failed


def show_metrics(path: Path) -> None:
    m = json.loads(path.read_text())
    tests = "  ".join(f"{k}={v:.4f}" for k, v in m.items() if k.startswith("test/"))
    print(f"{m.get('model')} on {m.get('data')}: train_time_s={m.get('train_time_s')}  {tests}  "
          f"epochs={m.get('epochs')}  samples_per_s={m.get('samples_per_s')}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("packages")
    ins = sub.add_parser("install")
    ins.add_argument("--wheels", type=Path, required=True)
    ins.add_argument("--target", type=Path, required=True)
    ins.add_argument("--dry-run", action="store_true")
    fam = sub.add_parser("families")
    fam.add_argument("--accelerator", default="gpu", choices=["gpu", "cpu"])
    fam.add_argument("--precision", default="bf16-mixed")
    fam.add_argument("--only", default="", help="comma-separated families or kinds (default: all)")
    fam.add_argument("--out", type=Path, default=None)
    fam.add_argument("--dry-run", action="store_true")
    fam.add_argument("--on-device", action="store_true", help="the device data path on a CPU too (a test)")
    fam.add_argument("overrides", nargs="*", help="more overrides for every run, e.g. threads=1")
    met = sub.add_parser("metrics")
    met.add_argument("file", type=Path)
    args = p.parse_args()

    if args.cmd == "packages":
        print("\n".join(pins()))
    elif args.cmd == "install":
        install(args.wheels, args.target, dry_run=args.dry_run)
    elif args.cmd == "families":
        out = args.out or Path(tempfile.mkdtemp(prefix="gpu_check_families_"))
        only = [s for s in args.only.split(",") if s]
        return 1 if families(accelerator=args.accelerator, precision=args.precision, only=only,
                             dry_run=args.dry_run, out=out, extra=args.overrides,
                             on_device=True if args.on_device else None) else 0
    elif args.cmd == "metrics":
        show_metrics(args.file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
