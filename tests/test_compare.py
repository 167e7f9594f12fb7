"""Comparison sweeps: per-run statistics, the report (Markdown, CSV, PNG) and its re-run without retraining."""

import csv
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from omegaconf import OmegaConf

import zoo
from tasks.runner import run
from tests.conftest import fast_overrides
from zoo.cli import main as zoo_main
from zoo.report import forward_flops, write_report

ROOT = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"


def _report_rows(sweep):
    with open(sweep / "report.csv", newline="") as f:
        return list(csv.DictReader(f))


def _fake_job(sweep, i, overrides, metrics=None, stats=None, error=None):
    job = sweep / str(i)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if metrics is not None:
        (job / "metrics.json").write_text(json.dumps(metrics))
    if stats is not None:
        (job / "stats.json").write_text(json.dumps(stats))
    if error is not None:
        (job / "error.txt").write_text(error)


def test_report_ranks_models_by_mean_over_seeds_and_names_failed_jobs(tmp_path):
    accs = {("mlp", 0): 0.91, ("mlp", 1): 0.95, ("lenet5", 0): 0.97, ("lenet5", 1): 0.96, ("resnet20", 0): 0.5}
    for i, ((model, seed), acc) in enumerate(accs.items()):
        _fake_job(tmp_path, i, ["experiment=compare_mnist", f"model={model}", f"seed={seed}"],
                  {"model": model, "test/acc": acc, "params": 10 * (i + 1), "train_time_s": 1.0 + i, "seed": seed,
                   "samples_per_s": 100.0, "epochs": 2},
                  {"flops_per_sample": 1000 * (i + 1), "peak_memory_mb": 500.0 + i})
    _fake_job(tmp_path, 9, ["experiment=compare_mnist", "model=alexnet", "seed=0"], error="RuntimeError: out of memory")
    report = write_report(tmp_path, metric="test/acc", mode="max")

    rows = _report_rows(tmp_path)
    assert [r["model"] for r in rows] == ["lenet5", "mlp", "resnet20"]  # seeds grouped, ranked by the mean
    for r in rows:
        values = [a for (m, _), a in accs.items() if m == r["model"]]
        assert float(r["test/acc_mean"]) == pytest.approx(statistics.fmean(values))
        assert r["seeds"] == str(len(values))
        assert (float(r["test/acc_std"]) == pytest.approx(statistics.stdev(values))) if len(values) > 1 \
            else r["test/acc_std"] == ""
    text = report.read_text()
    # 95% CI of two seeds: mean +/- t(0.975, 1) * std / sqrt(2), t = 12.706 (the table's value)
    assert "| 1 | `lenet5` | 0.9650 | +/- 0.0071 | [0.9015, 1.0285] | best | 2 |" in text
    assert "job 9 `alexnet` failed: RuntimeError: out of memory" in text
    with open(tmp_path / "runs.csv", newline="") as f:
        assert [r["status"][:6] for r in csv.DictReader(f)] == ["finish"] * 5 + ["failed"]
    for png in ("metric_vs_params.png", "metric_vs_time.png", "learning_curves.png"):
        assert (tmp_path / png).read_bytes()[:8] == PNG
    with pytest.raises(zoo.ZooError, match="no job folders"):
        write_report(tmp_path / "0")  # one job's folder, not the sweep's


ZOO_COMPARE = r"""
import sys
from zoo.cli import main
assert main(["compare", sys.argv[1], "--no-plots"]) == 0
print("IMPORTED", sorted({m.split(".")[0] for m in sys.modules} & {"tasks", "lightning", "hydra", "omegaconf"}))
"""


def test_zoo_compare_reads_a_sweep_without_the_training_side(tmp_path):
    for i, (model, acc) in enumerate((("mlp", 0.9), ("lenet5", 0.95))):
        _fake_job(tmp_path, i, [f"model={model}", "seed=0"], {"model": model, "test/acc": acc, "seed": 0})
    config = {"monitor": {"metric": "val/acc", "mode": "max"}, "dataset": "mnist",
              "data": {"dataset": "${dataset}"}, "trainer": {"max_epochs": 3}}  # as Hydra saves it: unresolved
    (tmp_path / "0" / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    r = subprocess.run([sys.executable, "-c", ZOO_COMPARE, str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "IMPORTED []" in r.stdout
    text = (tmp_path / "report.md").read_text()
    assert "Ranked by `test/acc` (higher is better)" in text  # the monitored metric, read from the saved config
    assert "Budget: data=mnist, trainer.max_epochs=3, seeds=0." in text
    assert [row["model"] for row in _report_rows(tmp_path)] == ["lenet5", "mlp"]


def _job(compose_cfg, sweep, i, *overrides):
    """One training job laid out as Hydra lays out a sweep's job folder."""
    out = sweep / str(i)
    (out / ".hydra").mkdir(parents=True)
    (out / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(list(overrides)))
    cfg = compose_cfg(*fast_overrides(*overrides, "data.batch_size=64", "+callbacks.model_stats._target_="
                                      "tasks.compare.ModelStats", f"paths.output_dir={out}"))
    OmegaConf.save(cfg, out / ".hydra" / "config.yaml")
    return run(cfg)


def test_report_of_real_runs_measures_flops_and_rewrites_without_retraining(compose_cfg, tmp_path, capsys):
    sweep = tmp_path / "sweep"
    runs = [_job(compose_cfg, sweep, i, f"model={m}") for i, m in enumerate(("mlp", "lenet5"))]
    write_report(sweep)  # defaults: the task's monitored metric, on the test set
    rows = {r["model"]: r for r in _report_rows(sweep)}
    mlp_flops = 2 * (784 * 512 + 512 * 512 + 512 * 10)  # three Linear layers, one multiply-add = 2 FLOPs
    assert int(float(rows["mlp"]["flops_per_sample"])) == mlp_flops
    lenet = zoo.create_model("lenet5")
    assert int(float(rows["lenet5"]["flops_per_sample"])) == forward_flops(lenet, (torch.randn(1, 1, 28, 28),))
    for m in runs:
        row = rows[m["model"]]
        assert float(row["test/acc_mean"]) == pytest.approx(m["test/acc"])
        assert int(float(row["params"])) == m["params"] and float(row["peak_memory_mb"]) > 0
        prov = json.loads((sweep / str(runs.index(m)) / "metrics.json").read_text())["provenance"]  # zoo.provenance
        assert (prov["threads"], prov["precision"], prov["device"]["type"]) == (torch.get_num_threads(), "32-true", "cpu")
        assert prov["packages"]["lightning"] and prov["git_commit"]
    assert "Provenance shared by every run" in (sweep / "report.md").read_text()
    first = (sweep / "report.csv").read_text()
    stamps = {p: p.stat().st_mtime_ns for p in sweep.glob("*/metrics.json")}

    (sweep / "report.csv").unlink()
    assert zoo_main(["compare", str(sweep), "--no-plots"]) == 0  # `zoo compare SWEEP_DIR`
    assert (sweep / "report.csv").read_text() == first
    assert {p: p.stat().st_mtime_ns for p in sweep.glob("*/metrics.json")} == stamps  # nothing retrained
    assert "test/acc" in capsys.readouterr().out


def test_multirun_experiment_writes_the_report_into_the_sweep_folder(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    r = subprocess.run(
        [sys.executable, "train.py", "-m", "experiment=compare_mnist", "model=mlp,auto", "goal.accuracy=light",
         "trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
         "trainer.limit_test_batches=1", "data.batch_size=32", "data.eval_batch_size=100",
         "callbacks.progress_bar=null", "threads=1", f"hydra.sweep.dir={tmp_path}"],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = _report_rows(tmp_path)
    assert sorted(row["model"] for row in rows) == ["mlp", "mobilenet_tiny"]  # job 1 resolved model=auto itself
    assert json.loads((tmp_path / "1" / "selection.json").read_text())["model"] == "mobilenet_tiny"
    for job in ("0", "1"):
        assert json.loads((tmp_path / job / "stats.json").read_text())["flops_per_sample"] > 0
        assert json.loads((tmp_path / job / "metrics.json").read_text())["seed"] == 0  # the experiment's seed
    assert "# compare_mnist" in (tmp_path / "report.md").read_text()


def test_forward_flops_count_attention_on_every_device():
    """vit_tiny's FLOPs match the analytic count: 2 x the multiply-adds of its patch embedding, linear layers,
    QK^T and AV products (the fused CPU attention kernel counted 0 before)."""
    from zoo.report import forward_flops

    kw = zoo.model_info("vit_tiny").defaults
    d, depth, r = kw["embed_dim"], kw["depth"], kw["mlp_ratio"]
    patches = (kw["img_size"] // kw["patch_size"]) ** 2
    n = patches + 1  # + the class token
    per_layer = n * d * 3 * d + n * d * d + 2 * n * d * int(d * r) + 2 * n * n * d  # qkv, proj, mlp, QK^T + AV
    macs = patches * kw["in_chans"] * kw["patch_size"] ** 2 * d + depth * per_layer + d * kw["num_classes"]
    counted = forward_flops(zoo.create_model("vit_tiny"), (torch.zeros(1, 3, kw["img_size"], kw["img_size"]),))
    assert counted == pytest.approx(2 * macs, rel=0.01)
