"""Wall time of ``python train.py model=X data=Y trainer.fast_dev_run=true`` for every registered model.

Each model runs on its canonical data: the first data config (conf/data/*.yaml, sorted) whose ``meta``
names one of the model's modalities and task kinds; image models run on MNIST (those that do not
classify, autoencoders, VAE and GANs, under the task they imply). One training batch, one validation batch and one
test batch each, in a fresh process, so the figure includes start-up. Goal: every run <= 30 s.

    python benchmarks/fast_dev_runs.py                 # all models, 2 threads
    python benchmarks/fast_dev_runs.py --models gpt transformer --threads 1
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import zoo  # noqa: E402


def canonical_data(name: str) -> str | None:
    """The data config a model's fast_dev_run uses (None: no data config fits)."""
    info = zoo.model_info(name)
    if info.modality == "image":
        return "mnist"  # the smallest image data; non-classifiers train under the task they imply
    for path in sorted((ROOT / "conf" / "data").glob("*.yaml")):
        meta = ((yaml.safe_load(path.read_text()) or {}).get("data") or {}).get("meta") or {}
        if meta.get("modality") in info.modalities and meta.get("task") in info.tasks:
            if path.stem == "ag_news":  # the shared data root holds its test split only
                continue
            return path.stem
    return None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="*", default=None, help="registry names (default: all)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--limit", type=float, default=30.0, help="seconds a run may take")
    args = p.parse_args()
    names = args.models or zoo.list_models()
    rows, slow = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i, name in enumerate(names):
            data = canonical_data(name)
            if data is None:
                rows.append((name, "-", float("nan"), "no data config"))
                continue
            cmd = [sys.executable, "train.py", f"model={name}", f"data={data}", "trainer.fast_dev_run=true",
                   f"threads={args.threads}", f"hydra.run.dir={tmp}/{i}"]
            t0 = time.perf_counter()
            done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=os.environ.copy())
            wall = time.perf_counter() - t0
            status = "ok" if done.returncode == 0 else f"exit {done.returncode}: {done.stderr.strip()[-200:]}"
            rows.append((name, data, wall, status))
            if wall > args.limit or done.returncode:
                slow.append(name)
            print(f"{name:24s} {data:18s} {wall:6.1f} s  {status}", flush=True)
    worst = max((r for r in rows if r[2] == r[2]), key=lambda r: r[2])
    print(f"\n{len(rows)} models; slowest: {worst[0]} on {worst[1]} in {worst[2]:.1f} s; "
          f"over {args.limit:.0f} s or failed: {', '.join(slow) or 'none'}")


if __name__ == "__main__":
    main()
