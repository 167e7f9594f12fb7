"""Train any zoo model on any dataset: ``python train.py model=resnet20 data=cifar10 trainer.max_epochs=5``.

Resume a killed or interrupted run with ``python train.py resume=outputs/<date>/<time>``. Search hyperparameters
with ``python train.py hparams_search=mnist_optuna`` (conf/hparams_search/, tasks/search.py).

Errors caused by the request (unknown names, missing data, bad values) print one message and exit 2;
set ``HYDRA_FULL_ERROR=1`` for the full traceback.
"""

from __future__ import annotations

import gc
import sys

import hydra
from omegaconf import DictConfig

from tasks.cli_checks import check_overrides, expand_resume, report_user_error
from tasks.config import CONF_DIR


@hydra.main(config_path="conf", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    """One run; returns its ``optimized_metric`` (None unless set), the value a hyperparameter sweeper optimises."""
    from tasks.runner import run  # heavy imports after the config is known to compose
    from tasks.search import objective

    # Importing torch, Lightning and timm makes millions of objects that live as long as the run; without
    # this, the collector scans them again and again (about 1 s of start-up and 2 s at exit, measured).
    gc.freeze()
    gc.enable()

    with report_user_error():
        return objective(cfg, run(cfg))


if __name__ == "__main__":
    gc.disable()  # until the imports are done: see main()
    sys.argv[1:] = expand_resume(sys.argv[1:])  # resume=RUN_DIR: continue a killed run in its own folder
    check_overrides(sys.argv[1:], str(CONF_DIR))
    main()
