"""Comparisons that can be trusted: confidence intervals and paired tests over seeds, time to a threshold,
sweeps merged across days, and the provenance each run records."""

import csv
import json
import math
import statistics
import subprocess
from pathlib import Path

import pytest
import torch
import yaml

import zoo
from zoo.cli import main as zoo_main
from zoo.provenance import collect_provenance, git_state
from zoo.report import write_report
from zoo.stats import mean_ci, paired_t_test, t_quantile, t_two_sided

ROOT = Path(__file__).resolve().parents[1]
PROVENANCE = {"git_commit": "a" * 40, "git_dirty": False, "packages": {"torch": "2.6.0", "timm": "1.0.0"},
              "threads": 2, "precision": "32-true", "device": {"type": "cpu", "cpu": "Test CPU", "gpu": None}}


@pytest.mark.parametrize(("p", "df", "table"), [
    (0.975, 1, 12.706), (0.975, 2, 4.303), (0.975, 3, 3.182), (0.975, 4, 2.776), (0.975, 9, 2.262),
    (0.975, 30, 2.042), (0.995, 5, 4.032), (0.95, 10, 1.812), (0.975, 10_000, 1.960), (0.025, 4, -2.776),
])
def test_t_quantiles_match_the_printed_tables(p, df, table):
    assert t_quantile(p, df) == pytest.approx(table, abs=6e-4)


def test_t_distribution_matches_its_closed_forms():
    for t in (0.1, 0.5, 1.0, 2.0, 3.4641, 10.0, 100.0):
        assert 1 - t_two_sided(t, 1) == pytest.approx(1 - 2 / math.pi * math.atan(t), rel=1e-12)  # Cauchy
        assert 1 - t_two_sided(t, 2) == pytest.approx(1 - t / math.sqrt(t * t + 2), rel=1e-9)
    with pytest.raises(zoo.ZooError, match="degrees of freedom"):
        t_quantile(0.975, 0)


def test_paired_t_test_pairs_by_seed():
    # seed effects far larger than the difference: unpaired it would be noise, paired it is 0.01 on every seed
    best = [0.90, 0.95, 0.99, 0.93]
    other = [b - 0.01 + e for b, e in zip(best, (0.001, -0.001, 0.002, -0.002), strict=True)]
    test = paired_t_test(other, best)
    diffs = [o - b for o, b in zip(other, best, strict=True)]
    assert test.t == pytest.approx(statistics.fmean(diffs) / (statistics.stdev(diffs) / 2))
    assert test.significant(0.05) and test.p < 0.01 and test.mean_diff < 0
    assert not paired_t_test(other, best[::-1]).significant(0.05)  # the same numbers, paired with other seeds
    # three seeds, differences 1, 2, 3: t = 2 / (1 / sqrt 3), and with 2 degrees of freedom p = 1 - t / sqrt(t^2 + 2)
    t = 2 * math.sqrt(3)
    assert paired_t_test([1.0, 2.0, 3.0], [0.0, 0.0, 0.0]).p == pytest.approx(1 - t / math.sqrt(t * t + 2))
    assert paired_t_test([0.9], [0.8]) is None  # one shared seed: no spread to test against
    assert paired_t_test([0.9, 0.8], [0.9, 0.8]).p == 1.0
    lo, hi = mean_ci([1.0, 2.0, 3.0])
    assert (lo, hi) == pytest.approx((2 - 4.303 / math.sqrt(3), 2 + 4.303 / math.sqrt(3)), abs=1e-3)
    assert mean_ci([1.0]) is None


def _job(sweep, i, model, seed, acc, *, val=None, steps=10, train_time=20.0, provenance=PROVENANCE,
         experiment="compare_mnist", max_epochs=2):
    """A finished job folder as a comparison sweep leaves it; ``val``: the val/acc curve, one value per epoch."""
    job = sweep / str(i)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"experiment={experiment}", f"model={model}",
                                                                   f"seed={seed}"]))
    config = {"seed": seed, "data": {"dataset": "mnist"}, "trainer": {"max_epochs": max_epochs}}
    (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    metrics = {"model": model, "test/acc": acc, "seed": seed, "params": 1000, "steps": steps,
               "train_time_s": train_time, "epochs": max_epochs}
    if provenance is not None:
        metrics["provenance"] = provenance
    (job / "metrics.json").write_text(json.dumps(metrics))
    if val is not None:  # as Lightning's CSVLogger writes it: validation at the epoch's last step (global - 1)
        per_epoch = steps // len(val)
        rows = [f"{e},{(e + 1) * per_epoch - 1},{v}" for e, v in enumerate(val)]
        (job / "csv").mkdir()
        (job / "csv" / "metrics.csv").write_text("epoch,step,val/acc\n" + "\n".join(rows) + "\n")


def _rows(folder):
    with open(folder / "report.csv", newline="") as f:
        return {r["model"]: r for r in csv.DictReader(f)}


ACC = {"lenet5": (0.980, 0.985, 0.990), "resnet20": (0.979, 0.986, 0.987), "mlp": (0.960, 0.966, 0.970)}
VAL = {"lenet5": (0.96, 0.98), "resnet20": (0.95, 0.975), "mlp": (0.95, 0.96)}


def _sweep(folder, seeds, *, start=0, **kw):
    i = start
    for seed in seeds:
        for model, accs in ACC.items():
            _job(folder, i, model, seed, accs[seed], val=(VAL[model][0], VAL[model][1] + 0.001 * seed), **kw)
            i += 1


def test_report_gives_confidence_intervals_paired_tests_and_time_to_threshold(tmp_path):
    _sweep(tmp_path, (0, 1, 2))
    _job(tmp_path, 9, "alexnet", 0, 0.5)  # one seed: nothing to pair with the best
    report = write_report(tmp_path, metric="test/acc", mode="max", threshold=0.97, plots=False).read_text()
    rows = _rows(tmp_path)

    assert list(rows) == ["lenet5", "resnet20", "mlp", "alexnet"]
    for model, accs in ACC.items():  # mean +/- t(0.975, 2) * std / sqrt(3), t = 4.303 from the table
        half = 4.303 * statistics.stdev(accs) / math.sqrt(3)
        assert float(rows[model]["test/acc_ci95_low"]) == pytest.approx(statistics.fmean(accs) - half, abs=1e-5)
        assert float(rows[model]["test/acc_ci95_high"]) == pytest.approx(statistics.fmean(accs) + half, abs=1e-5)
    assert rows["alexnet"]["test/acc_ci95_low"] == ""
    assert [rows[m]["vs_best"] for m in rows] == ["best", "tied", "worse", "n/a"]  # resnet20 within noise of lenet5
    assert float(rows["resnet20"]["p_vs_best"]) > 0.05 > float(rows["mlp"]["p_vs_best"])
    assert "two-sided paired t-test against the best row" in report and "alpha 0.05" in report

    # val/acc >= 0.97 first at epoch 2 of 2 (step 9 of 10: all 20 s) for lenet5 and resnet20; never for mlp
    assert float(rows["lenet5"]["time_to_threshold_s"]) == pytest.approx(20.0)
    assert rows["resnet20"]["threshold_reached"] == "3/3" and rows["mlp"]["threshold_reached"] == "0/3"
    assert "| time to val/acc >= 0.97 (s) |" in report and "not reached" in report
    assert "| n/a (no curve) |" in report  # alexnet logged no curve


def test_time_to_threshold_reads_the_curve_and_counts_the_seeds_that_reach_it(tmp_path):
    _job(tmp_path, 0, "lenet5", 0, 0.98, val=(0.90, 0.975, 0.99, 0.99), steps=40, train_time=100.0)
    _job(tmp_path, 1, "lenet5", 1, 0.98, val=(0.90, 0.92, 0.93, 0.94), steps=40, train_time=100.0)
    write_report(tmp_path, metric="test/acc", mode="max", threshold=0.97, plots=False)
    row = _rows(tmp_path)["lenet5"]
    assert float(row["time_to_threshold_s"]) == pytest.approx(50.0)  # after epoch 2 of 4: half the train time
    assert row["threshold_reached"] == "1/2"
    assert "50.0 (1/2 seeds)" in (tmp_path / "report.md").read_text()
    write_report(tmp_path, metric="test/acc", mode="min", threshold=0.92, plots=False)  # lower is better
    assert float(_rows(tmp_path)["lenet5"]["time_to_threshold_s"]) == pytest.approx(25.0)  # 0.90 at epoch 1


def _table(report: Path) -> list[str]:
    return [line for line in report.read_text().splitlines() if line.startswith("|")]


def test_two_sweeps_merge_into_the_report_of_one(tmp_path):
    one, day1, day2, out = (tmp_path / n for n in ("one", "day1", "day2", "out"))
    _sweep(one, (0, 1, 2))
    _sweep(day1, (0, 1))
    _sweep(day2, (2,))  # its jobs are numbered from 0 again
    write_report(one, metric="test/acc", mode="max", threshold=0.97, plots=False)
    assert zoo_main(["compare", str(day1), str(day2), "--out", str(out), "--metric", "test/acc", "--mode", "max",
                     "--threshold", "0.97", "--no-plots"]) == 0
    assert (out / "report.csv").read_text() == (one / "report.csv").read_text()
    assert _table(out / "report.md") == _table(one / "report.md")
    merged = (out / "report.md").read_text()
    assert f"Merged from `{day1}` (seeds 0,1), `{day2}` (seeds 2)" in merged
    assert "Budget: data=mnist, trainer.max_epochs=2, seeds=0,1,2." in merged
    assert "Provenance shared by every run" in merged
    with open(out / "runs.csv", newline="") as f:
        assert sorted({r["sweep"] for r in csv.DictReader(f)}) == ["day1", "day2"]
    assert not (day2 / "report.md").exists()  # --out: the sweeps themselves are left alone


def test_merging_flags_provenance_and_refuses_other_experiments(tmp_path, capsys):
    day1, day2 = tmp_path / "day1", tmp_path / "day2"
    _sweep(day1, (0, 1))
    _sweep(day2, (2,), provenance={**PROVENANCE, "git_commit": "b" * 40, "packages": {"torch": "2.7.0",
                                                                                       "timm": "1.0.0"}})
    text = write_report([day1, day2], metric="test/acc", mode="max", plots=False).read_text()
    flagged = next(line for line in text.splitlines() if line.startswith("**Provenance differs**"))
    assert "`git_commit`" in flagged and "`packages.torch`" in flagged and "packages.timm" not in flagged
    assert "2.6.0 in sweep `day1`" in flagged and "2.7.0 in sweep `day2`" in flagged

    for name, kw, key in (("cifar", {"experiment": "compare_cifar10"}, "experiment"),
                          ("longer", {"max_epochs": 5}, "trainer.max_epochs")):
        _sweep(tmp_path / name, (2,), **kw)
        with pytest.raises(zoo.ZooError, match=f"ran different experiments.*{key}"):
            write_report([day1, tmp_path / name], plots=False)
        assert zoo_main(["compare", str(day1), str(tmp_path / name), "--no-plots"]) == 2
        assert f"{key}: " in capsys.readouterr().err


def test_runs_record_the_code_libraries_and_machine(tmp_path):
    prov = collect_provenance(threads=3, precision="bf16-mixed", device=torch.device("cpu"))
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    assert prov["git_commit"] == head and isinstance(prov["git_dirty"], bool)  # the checkout zoo runs from
    assert prov["packages"]["torch"] == torch.__version__.split("+")[0] or prov["packages"]["torch"] == torch.__version__
    assert all(prov["packages"][k] for k in ("lightning", "hydra-core", "timm", "dnn-zoo"))
    assert (prov["threads"], prov["precision"], prov["device"]["type"]) == (3, "bf16-mixed", "cpu")
    assert prov["device"]["cpu"] and prov["device"]["gpu"] is None
    json.dumps(prov)  # goes into metrics.json as it is

    repo = tmp_path / "repo"  # a checkout: clean, then dirty; a file it does not track has no commit
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    (repo / "a.py").write_text("x = 1\n")
    for args in (["init", "-q"], ["add", "a.py"], ["commit", "-qm", "a"]):
        subprocess.run([*git, *args], check=True, capture_output=True)
    commit, dirty = git_state(repo / "a.py")
    assert len(commit) == 40 and dirty is False
    (repo / "a.py").write_text("x = 2\n")
    assert git_state(repo / "a.py") == (commit, True)
    (repo / "untracked.py").write_text("")
    assert git_state(repo / "untracked.py") == (None, None)  # e.g. a zoo installed into a venv inside a repo


@pytest.mark.parametrize("experiment", sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("compare_*.yaml")))
def test_every_comparison_states_its_time_to_threshold(experiment, compose_cfg):
    from hydra.utils import instantiate

    cfg = compose_cfg(f"experiment={experiment}", return_hydra_config=True, resolve=False)
    report = instantiate(cfg.hydra.callbacks.compare_report)  # a misspelt setting fails here, not after the sweep
    kw = report.kwargs
    assert isinstance(kw["threshold"], float | int), f"{experiment}: set threshold (the 'time to reach' column)"
    assert (kw["threshold_metric"] or kw["metric"].replace("test/", "val/")).startswith("val/")
