"""Hyperparameter search: train.py returns the run's optimized_metric, a sweep's best trial is found and written,
the search configs search real keys, and an Optuna search runs end to end.

The Optuna sweeper is the ``search`` extra (``pip install '.[search]'``): the tests that compose or run a search
are skipped where it is not installed (``.[dev]``, which CI installs, includes it); the others run everywhere.
"""

import json
import sys
from pathlib import Path

import pytest
import yaml
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from tasks.cli_checks import check_overrides
from tasks.search import best_trial, objective
from tasks.signatures import ConfigError
from tests.conftest import CONF_DIR, fast_overrides

SEARCHES = sorted(p.stem for p in (Path(CONF_DIR) / "hparams_search").glob("*.yaml"))
SWEEPER = "hydra_plugins.hydra_optuna_sweeper"


def test_a_run_returns_its_optimized_metric():
    metrics = {"test/acc": 0.9, "val/acc": 0.8, "val/loss": 0.5, "params": 10}
    assert objective(OmegaConf.create({"optimized_metric": "val/acc"}), metrics) == 0.8
    assert objective(OmegaConf.create({"optimized_metric": None}), metrics) is None  # a plain run returns nothing
    with pytest.raises(ConfigError, match=r"optimized_metric='val/ppl' is not among this run's metrics "
                                          r"\(test/acc, val/acc, val/loss\)"):
        objective(OmegaConf.create({"optimized_metric": "val/ppl"}), metrics)


def _job(sweep: Path, num: int, value: float | None, overrides: list[str]) -> None:
    (sweep / str(num) / ".hydra").mkdir(parents=True)
    (sweep / str(num) / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if value is not None:  # a failed trial leaves no metrics.json
        (sweep / str(num) / "metrics.json").write_text(json.dumps({"val/loss": value}))


def test_the_best_trial_is_the_best_finished_job_and_runs_again_as_one_run(tmp_path):
    _job(tmp_path, 0, 0.7, ["hparams_search=mnist_optuna", "task.optimizer.lr=0.01"])
    _job(tmp_path, 1, 0.3, ["hparams_search=mnist_optuna", "task.optimizer.lr=0.002", "data.augment=crop+mixup"])
    _job(tmp_path, 2, None, ["hparams_search=mnist_optuna", "task.optimizer.lr=0.5"])
    _job(tmp_path, 3, 0.9, ["hparams_search=mnist_optuna", "task.optimizer.lr=0.03"])
    best = best_trial(tmp_path, metric="val/loss", direction="minimize")
    assert (best["value"], best["trials"], best["run_dir"]) == (0.3, 3, str(tmp_path / "1"))
    assert best["command"] == ("python train.py hparams_search=mnist_optuna task.optimizer.lr=0.002 "
                               "data.augment=crop+mixup hydra.mode=RUN")
    assert best_trial(tmp_path, metric="val/loss", direction="maximize")["run_dir"] == str(tmp_path / "3")
    assert best_trial(tmp_path, metric="val/acc", direction="maximize") is None


def test_a_search_without_the_sweeper_names_the_pip_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, SWEEPER, None)  # as if not installed
    with pytest.raises(SystemExit) as e:
        check_overrides(["hparams_search=mnist_optuna", "trainer.max_epochs=1"], CONF_DIR)
    assert e.value.code == 2
    assert ("error: hparams_search=mnist_optuna needs the hydra-optuna-sweeper package, which is not installed: "
            "pip install 'dnn-zoo[search]' (or pip install hydra-optuna-sweeper).") in capsys.readouterr().err


@pytest.mark.parametrize("search", SEARCHES)
def test_search_configs_search_keys_the_run_has_and_optimise_a_validation_metric(compose_cfg, search):
    pytest.importorskip(SWEEPER)
    cfg = compose_cfg(f"hparams_search={search}", return_hydra_config=True, resolve=False)
    sweeper, absent = cfg.hydra.sweeper, object()
    assert sweeper._target_.endswith("OptunaSweeper") and str(cfg.hydra.mode).endswith("MULTIRUN")
    assert cfg.optimized_metric.startswith("val/") and sweeper.direction in ("minimize", "maximize")
    for key in sweeper.params:  # a typo here would only fail when the first trial starts
        assert OmegaConf.select(cfg, key, default=absent) is not absent, key
    assert "tasks.search.BestTrial" in [c._target_ for c in cfg.hydra.callbacks.values()]


@pytest.fixture
def fresh_hydra():
    """Hydra's global state as a test found it: a sweep sets the running job's config, which later composes read."""
    GlobalHydra.instance().clear()
    yield
    GlobalHydra.instance().clear()
    HydraConfig.instance().cfg = None


def test_an_optuna_search_runs_its_trials_and_writes_the_best(tmp_path, data_dir, fresh_hydra, capsys, one_thread):
    pytest.importorskip(SWEEPER)
    import train

    overrides = ["hparams_search=mnist_optuna", "hydra.sweeper.n_trials=2", f"hydra.sweep.dir={tmp_path}",
                 f"paths.data_dir={data_dir}", *fast_overrides("logger=none", "test=false",
                                                                    "trainer.limit_train_batches=2")]
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        GlobalHydra.instance().hydra.multirun(config_name="train", task_function=train.main, overrides=overrides,
                                              with_log_configuration=False)

    jobs = {p.name: json.loads((p / "metrics.json").read_text()) for p in tmp_path.iterdir() if p.is_dir()}
    assert sorted(jobs) == ["0", "1"] and all(0 <= m["val/acc"] <= 1 for m in jobs.values())
    results = OmegaConf.load(tmp_path / "optimization_results.yaml")  # the sweeper's own summary
    params = OmegaConf.load(tmp_path / "0" / ".hydra" / "hydra.yaml").hydra.sweeper.params
    assert set(results.best_params) == set(params)
    assert results.best_value == max(m["val/acc"] for m in jobs.values())
    best = yaml.safe_load((tmp_path / "best_trial.yaml").read_text())
    assert best["value"] == results.best_value and best["metric"] == "val/acc"
    assert jobs[Path(best["run_dir"]).name]["val/acc"] == results.best_value
    assert all(f"{k}={v}" in best["overrides"] for k, v in results.best_params.items())
    assert f"[search] best of 2 trials: val/acc={results.best_value:.4f}" in capsys.readouterr().out
