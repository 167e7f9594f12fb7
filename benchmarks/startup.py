"""Start-up time: ``import zoo`` and ``python train.py trainer.fast_dev_run=true``, with the floors under them.

Each command runs in a fresh interpreter ``--repeats`` times, the commands alternating (round-robin), so a
neighbour's load falls on all of them alike; prints every wall time, the median wall and CPU (user + system)
seconds and the peak memory, then where the import time goes (``python -X importtime``).
Goals, on an idle 2-core machine: ``import zoo`` <= 2.5 s, the fast_dev_run <= 8 s (medians of 5).

    python benchmarks/startup.py                      # 5 rounds, then the import-time offenders
    python benchmarks/startup.py --repeats 3 --no-importtime
    git worktree add /tmp/base HEAD~1 && python benchmarks/startup.py --baseline /tmp/base   # A/B, alternating

The floors say what no change to the project can remove: the interpreter, ``import torch`` (every model
needs it), and "run's imports", the modules a fast_dev_run imports (Lightning, torchmetrics, timm, Hydra,
torch), so that fast_dev_run minus that row is the run itself: composing the config, reading the data,
one training and one validation batch, the test, the checkpoint and metrics.json. On a shared machine the
CPU seconds move less than the wall seconds.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ["train.py", "trainer.fast_dev_run=true", "threads=2"]
GOALS = {"import zoo": 2.5, "fast_dev_run": 8.0}
RUN_IMPORTS = "import hydra.utils, tasks.runner, tasks.classification, tasks.data.vision, zoo.models"


def commands() -> dict[str, list[str]]:
    py = sys.executable
    return {
        "python (interpreter)": [py, "-c", "pass"],
        "import torch": [py, "-c", "import torch"],
        "import zoo": [py, "-c", "import zoo"],
        "zoo.create_model": [py, "-c", "import zoo; zoo.create_model('lenet5')"],
        "run's imports": [py, "-c", RUN_IMPORTS],
        "fast_dev_run": [py, *TRAIN],
    }


def timed(argv: list[str], cwd: Path = ROOT) -> tuple[float, float, float]:
    """(wall s, user+system CPU s, peak RSS MiB) of one run of ``argv`` in ``cwd``; a failure stops the benchmark."""
    out = None
    if argv[1:2] == ["train.py"]:
        out = tempfile.mkdtemp(prefix="startup_")
        argv = [*argv, f"hydra.run.dir={out}"]
    try:
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        output = proc.stdout.read()
        proc.stdout.close()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
    finally:
        if out is not None:
            shutil.rmtree(out, ignore_errors=True)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed ({proc.returncode}):\n{output.decode(errors='replace')[-3000:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def importtime(argv: list[str]) -> list[tuple[int, int, str]]:
    """(self us, cumulative us, module) of every import ``argv`` makes, from ``-X importtime``."""
    out = tempfile.mkdtemp(prefix="startup_")
    extra = [f"hydra.run.dir={out}"] if argv[1:2] == ["train.py"] else []
    try:
        r = subprocess.run([argv[0], "-X", "importtime", *argv[1:], *extra], cwd=ROOT, capture_output=True,
                           text=True)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    rows = []
    for line in r.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|\s*(\S+)", line)
        if m:
            rows.append((int(m.group(1)), int(m.group(2)), m.group(3)))
    return rows


def report_imports(label: str, rows: list[tuple[int, int, str]], top: int) -> None:
    by_package = collections.Counter()
    for self_us, _, name in rows:
        by_package[name.split(".")[0]] += self_us
    total = sum(by_package.values()) / 1e6
    print(f"\n{label}: {len(rows)} modules, {total:.2f} s of import time (self times; -X importtime adds some)")
    print("  by top-level package (self time, s):")
    for name, us in by_package.most_common(top):
        print(f"    {name:28s} {us / 1e6:6.2f}")
    ours = [(cum, name) for _, cum, name in rows if name.split(".")[0] in ("zoo", "tasks")]
    print("  the project's heaviest imports (cumulative, s; a module imported by importlib is not listed):")
    for cum, name in sorted(ours, reverse=True)[:8]:
        print(f"    {name:28s} {cum / 1e6:6.2f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--top", type=int, default=15, help="packages listed in the import-time breakdown")
    p.add_argument("--no-importtime", action="store_true", help="skip the -X importtime breakdown")
    p.add_argument("--baseline", type=Path, help="another checkout (git worktree) whose zoo and train.py run "
                   "alternating with this one's, for a before/after comparison")
    args = p.parse_args()

    cmds = commands()
    where = {name: ROOT for name in cmds}
    if args.baseline is not None:  # `python -c` and train.py import zoo/tasks from their working directory
        where = {**{f"{n} [baseline]": args.baseline.resolve() for n in cmds if n in GOALS}, **where}
        cmds = {n: cmds[n.removesuffix(" [baseline]")] for n in where}
    runs: dict[str, list[tuple[float, float, float]]] = {k: [] for k in cmds}
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; ZOO_DATA_DIR={os.environ.get('ZOO_DATA_DIR')}")
    for i in range(args.repeats):
        for name, argv in cmds.items():
            runs[name].append(timed(argv, where[name]))
        print(f"round {i + 1}/{args.repeats}: " + "  ".join(f"{k} {v[-1][0]:.2f}s" for k, v in runs.items()),
              flush=True)

    print(f"\n{'command':26s} {'median wall':>11s} {'median CPU':>10s} {'peak MiB':>8s}  goal   all wall times (s)")
    for name, rs in runs.items():
        wall = statistics.median(r[0] for r in rs)
        cpu = statistics.median(r[1] for r in rs)
        goal = GOALS.get(name)
        verdict = "" if goal is None else f"<={goal:g} {'ok' if wall <= goal else 'OVER'}"
        print(f"{name:26s} {wall:10.2f}s {cpu:9.2f}s {max(r[2] for r in rs):8.0f}  {verdict:8s} "
              + " ".join(f"{r[0]:.2f}" for r in rs))
    run_wall = statistics.median(r[0] for r in runs["fast_dev_run"])
    imports_wall = statistics.median(r[0] for r in runs["run's imports"])
    print(f"\nfast_dev_run = {imports_wall:.2f} s of imports + {run_wall - imports_wall:.2f} s of compose, data, "
          f"fit, test (medians)")

    if not args.no_importtime:
        report_imports("import zoo", importtime(cmds["import zoo"]), args.top)
        report_imports("fast_dev_run", importtime(cmds["fast_dev_run"]), args.top)


if __name__ == "__main__":
    main()
