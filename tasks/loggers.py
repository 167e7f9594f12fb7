"""Experiment trackers beside the CSV and TensorBoard logs: MLflow's local store, and ending wandb's run.

``logger=mlflow`` and ``logger=wandb`` (conf/logger/) need the ``track`` extra (tasks/extras.py says so when
it is missing). Both write locally by default and need no account or server.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Literal

from lightning.pytorch.loggers import MLFlowLogger as _LightningMLFlowLogger


class MLFlowLogger(_LightningMLFlowLogger):
    """Lightning's MLflow logger whose default store is a local folder (``save_dir``) that MLflow 3 still opens.

    MLflow 3 keeps its folder store (``mlruns/``: plain files, no database to create or migrate, read by
    ``mlflow ui --backend-store-uri DIR`` and ``mlflow.search_runs``) in maintenance mode and refuses it
    unless ``MLFLOW_ALLOW_FILE_STORE`` is true; with no ``tracking_uri`` (or a ``file:`` one) this sets it for
    the process, unless the environment already says otherwise. Any other tracking URI (a server
    ``http://host:5000``, ``sqlite:///mlflow.db``, ``databricks``) is passed on untouched. ``save_dir`` is made
    absolute, so the store does not move with the working directory.
    """

    def __init__(
        self,
        *,
        experiment_name: str = "dnn-zoo",
        run_name: str | None = None,
        tracking_uri: str | None = None,
        save_dir: str = "outputs/mlruns",
        tags: dict[str, Any] | None = None,
        log_model: Literal[True, False, "all"] = False,
        prefix: str = "",
        artifact_location: str | None = None,
        run_id: str | None = None,
    ) -> None:
        if not tracking_uri or tracking_uri.startswith("file:"):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        super().__init__(experiment_name=experiment_name, run_name=run_name, tracking_uri=tracking_uri or None,
                         tags=tags, save_dir=str(Path(save_dir).expanduser().resolve()), log_model=log_model,
                         prefix=prefix, artifact_location=artifact_location, run_id=run_id)


def finish_runs(*, failed: bool = False) -> None:
    """End the wandb run this process holds, so that the next run in it (a sweep's next trial) gets its own.

    wandb keeps one run per process and Lightning's ``WandbLogger`` joins a run in progress instead of starting
    one; the run would otherwise stay open until the process exits. MLflow's logger needs nothing: it names its
    run by id and ends it itself.
    """
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish(exit_code=1 if failed else 0)
