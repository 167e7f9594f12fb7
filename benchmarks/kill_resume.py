"""Kill and resume, one task of each kind: SIGKILL mid-epoch, then ``resume=RUN_DIR``; does it end where an
uninterrupted run ends?

For each case, three ``train.py`` processes: the uninterrupted run, a paced run killed with SIGKILL once it has
done ``--kill-at`` steps (a checkpoint every 10 steps, so the kill loses the steps since the last one), and
``python train.py resume=<its folder>``. Prints a table of the test metrics of the uninterrupted and the
resumed run and whether they are equal. The DDP case (2 CPU processes, gloo) kills one rank, the child, and
reports how long the surviving rank took to stop instead of waiting in a collective.

    python benchmarks/kill_resume.py                       # classify, lm, gan, diffusion, ddp
    python benchmarks/kill_resume.py --cases gan ddp
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMON = ["seed=3", "checkpoint_every=10", "callbacks.progress_bar=null", "logger=none", "threads=1",
          "trainer.max_epochs=2", "trainer.limit_val_batches=2", "trainer.limit_test_batches=2"]
LENET5 = ["model=lenet5", "data=mnist", "data.batch_size=64", "trainer.limit_train_batches=40"]
CASES = {
    "classify": LENET5,
    "lm": ["model=gpt", "data=tiny_shakespeare", "model.dim=32", "model.depth=1", "data.batch_size=8",
           "data.block_size=64", "data.eval_batch_size=16", "task.sample_tokens=20", "trainer.limit_train_batches=40"],
    "gan": ["model=gan", "data=mnist", "task=gan", "data.batch_size=64", "trainer.limit_train_batches=40",
            "task.fd_samples=500"],
    "diffusion": ["model=ddpm", "data=mnist", "task=diffusion", "model.width=8", "model.channel_mults=[1,2]",
                  "model.num_heads=2", "data.batch_size=32", "data.eval_batch_size=100", "trainer.limit_train_batches=40",
                  "task.val_fd_samples=0", "task.fd_samples=200", "task.test_steps=5"],
    "ddp": [*LENET5, "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"],
}


def _train(args: list[str]) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    return subprocess.Popen([sys.executable, "train.py", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen, what: str) -> None:
    _, err = proc.communicate(timeout=900)
    if proc.returncode != 0:
        sys.exit(f"{what} failed (exit {proc.returncode}):\n{err[-3000:]}")


def _metrics(run_dir: Path) -> dict[str, float]:
    m = json.loads((run_dir / "metrics.json").read_text())
    return {k: v for k, v in m.items() if k.startswith("test/")} | {"steps": m["steps"]}


def _step(path: Path) -> int:
    try:  # rewritten after every batch: it may be empty for an instant
        return int(path.read_text())
    except (OSError, ValueError):
        return -1


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _kill_and_resume(args: list[str], run_dir: Path, at: int, ddp: bool) -> tuple[int, float | None, dict]:
    """Kill a paced run at step ``at`` (one rank of it under DDP), resume it; (kill step, survivor's stop time)."""
    steps = run_dir.parent / f"{run_dir.name}-steps"
    pace = ["+callbacks.recorder._target_=tests.helpers.StepRecorder", f"+callbacks.recorder.path={steps}",
            "+callbacks.recorder.seconds=0.05"]
    victim = _train([*args, *pace, f"hydra.run.dir={run_dir}"])
    deadline = time.time() + 600
    while _step(steps) < at:
        if victim.poll() is not None or time.time() > deadline:
            sys.exit(f"the run ended before step {at}:\n{victim.stderr.read()[-3000:]}")
        time.sleep(0.01)
    killed_at, stopped = _step(steps), None
    if ddp:  # kill rank 1 (a child of rank 0's process, which Lightning launched); time rank 0's exit
        ranks = [c for c in _children(victim.pid) if "train.py" in Path(f"/proc/{c}/cmdline").read_text()]
        if not ranks:
            sys.exit("no second rank found to kill")
        t0 = time.time()
        os.kill(ranks[0], signal.SIGKILL)
        try:
            victim.wait(timeout=600)
        except subprocess.TimeoutExpired:
            victim.kill()
        stopped = time.time() - t0
    else:
        victim.send_signal(signal.SIGKILL)
        victim.wait()
    resumed = _train([f"resume={run_dir}"])
    _finish(resumed, "the resumed run")
    return killed_at, stopped, _metrics(run_dir)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    p.add_argument("--kill-at", type=int, default=25, help="the step to kill at (mid-epoch; checkpoints every 10)")
    args = p.parse_args()
    if not os.environ.get("ZOO_DATA_DIR"):
        sys.exit("set ZOO_DATA_DIR to the data root (README: Data)")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in args.cases:
            run = [*CASES[case], *COMMON]
            t0 = time.time()
            ref = _train([*run, f"hydra.run.dir={tmp}/{case}-whole"])
            _finish(ref, f"the uninterrupted {case} run")
            whole = _metrics(Path(tmp) / f"{case}-whole")
            killed_at, stopped, resumed = _kill_and_resume(run, Path(tmp) / f"{case}-cut", args.kill_at,
                                                           case == "ddp")
            same = whole == resumed
            rows.append((case, killed_at, stopped, whole, resumed, same))
            print(f"{case}: killed at step {killed_at}; uninterrupted {whole}; resumed {resumed}; "
                  f"{'EQUAL' if same else 'DIFFERENT'} ({time.time() - t0:.0f} s)", flush=True)
    print("\n| task | run | killed at step | uninterrupted: test metrics | killed + resumed: test metrics | equal |")
    print("|---|---|---|---|---|---|")
    for case, killed_at, stopped, whole, resumed, same in rows:
        what = " ".join(a for a in CASES[case] if a.startswith(("model=", "data=", "trainer=")))
        at = f"{killed_at}" + (f" (rank 1; rank 0 stopped {stopped:.1f} s later)" if stopped is not None else "")
        fmt = lambda m: ", ".join(f"{k} {v:.6g}" if isinstance(v, float) else f"{k} {v}" for k, v in m.items())  # noqa: E731
        print(f"| {case} | `{what}` | {at} | {fmt(whole)} | {fmt(resumed)} | {'yes' if same else 'NO'} |")


if __name__ == "__main__":
    main()
