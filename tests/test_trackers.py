"""Trackers beside the CSV logs: ``logger=mlflow`` writes a run that MLflow reads back, ``logger=wandb`` writes its
run offline (no account), and asking for either without its package names the pip install to run.

The two runs need the ``track`` extra (``pip install '.[track]'``) and are skipped where it is not installed:
CI installs ``.[dev]`` only.
"""

import json
import re
import sys
import time

import pytest

from tasks.runner import run
from tasks.signatures import ConfigError
from tasks.validate import validate_config
from tests.conftest import fast_overrides


def test_mlflow_logger_writes_a_run_that_mlflow_reads_back(compose_cfg, tmp_path, monkeypatch, one_thread):
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the config's default: the local store
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "")  # recorded, so that undoing deletes what the logger sets...
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE")  # ... and MLflow 3 refuses a folder store unless the logger does
    store = tmp_path / "mlruns"
    metrics = run(compose_cfg(*fast_overrides("logger=mlflow", f"logger.mlflow.save_dir={store}")))

    client = mlflow.tracking.MlflowClient(f"file:{store}")
    experiment = client.get_experiment_by_name("dnn-zoo")
    (found,) = client.search_runs([experiment.experiment_id])
    assert found.info.status == "FINISHED"
    logged = found.data.metrics
    for key in ("test/acc", "test/loss", "val/acc", "val/loss"):
        assert logged[key] == pytest.approx(metrics[key], rel=1e-6), key
    assert found.data.tags["run_dir"] == str(tmp_path)  # the MLflow run names its run folder
    assert found.data.params["model/name"] == "lenet5"  # the task's hyperparameters


def test_wandb_logger_writes_its_run_offline_and_ends_it(compose_cfg, tmp_path, monkeypatch, one_thread):
    wandb = pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_MODE", raising=False)  # the config's default: offline, no account or network
    monkeypatch.setenv("WANDB_SILENT", "true")
    metrics = run(compose_cfg(*fast_overrides("logger=wandb")))

    (offline,) = (tmp_path / "wandb").glob("offline-run-*")  # in the run folder, ready for `wandb sync`
    (log,) = offline.glob("run-*.wandb")
    deadline = time.monotonic() + 30  # wandb's service process writes the file after wandb.finish() returns
    while b"test/acc" not in log.read_bytes() and time.monotonic() < deadline:
        time.sleep(0.2)
    for key in ("test/acc", "val/acc"):
        assert metrics[key] in _wandb_values(log.read_bytes(), key), key
    assert wandb.run is None  # ended: the next run in this process (a sweep's next trial) starts its own


def _wandb_values(record_log: bytes, key: str) -> list:
    """The values logged under ``key`` in a wandb run file, whose records are protobuf messages: an item holds its
    key (field 1, or field 2 as a one-part nested key) and then its value as JSON (field 16), as plain bytes
    (HistoryItem, SummaryItem in wandb/proto/wandb_internal.proto). Values under 128 bytes only."""
    k = key.encode()
    found = re.finditer(rb"[\x0a\x12]" + bytes([len(k)]) + re.escape(k) + rb"\x82\x01", record_log)
    return [json.loads(record_log[m.end() + 1 : m.end() + 1 + record_log[m.end()]]) for m in found]


@pytest.mark.parametrize("logger,module,package", [("wandb", "wandb", "wandb"), ("mlflow", "mlflow", "mlflow-skinny")])
def test_a_tracker_without_its_package_names_the_pip_install(compose_cfg, monkeypatch, logger, module, package):
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed: `import mlflow` fails
    with pytest.raises(ConfigError) as e:
        validate_config(compose_cfg(f"logger={logger}"))  # before any data is read
    assert str(e.value) == (f"logger={logger} needs the {package} package, which is not installed: "
                            f"pip install 'dnn-zoo[track]' (or pip install {package}).")
