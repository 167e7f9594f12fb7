"""Several runs in turn from one command: ``python train.py experiment=bert_sst2`` pretrains, then fine-tunes.

An experiment lists its stages, in order, under the top-level key ``stages``::

    stages:
      pretrain:
        overrides: [data=sst2_mlm, trainer.max_epochs=20]
      finetune:
        init_from: pretrain        # start from that earlier stage's best checkpoint (its last.ckpt if none)
        overrides: [data=sst2, trainer.max_epochs=4]

Each stage is the job's own config composed again with the stage's overrides on top (a key a stage sets wins
over the command line; the rest of the command line, ``seed=1`` or ``threads=1``, applies to every stage),
with ``stages=null`` and its own folder ``<run folder>/<stage name>``, and is trained and tested by
:func:`tasks.runner.run` like any run. A stage whose folder holds ``metrics.json`` already is not run again, so
``resume=RUN_DIR`` continues a killed experiment in the stage it was in. Each stage's metrics and times are
printed and written to ``stages.json``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from tasks.checkpoints import write_atomic
from tasks.resolve import _recompose, job_overrides
from tasks.validate import ConfigError

STAGE_KEYS = ("overrides", "init_from")


def _stage_specs(cfg: DictConfig) -> dict[str, dict[str, Any]]:
    stages = OmegaConf.to_container(cfg.stages, resolve=True)
    if not isinstance(stages, dict) or not stages:
        raise ConfigError("stages must map stage names to {overrides: [...], init_from: <earlier stage>} "
                          "(conf/experiment/bert_sst2.yaml is an example)")
    seen: list[str] = []
    for name, spec in stages.items():
        spec = spec or {}
        unknown = sorted(set(spec) - set(STAGE_KEYS)) if isinstance(spec, dict) else None
        if unknown is None or unknown:
            raise ConfigError(f"stages.{name}: a stage has the keys {', '.join(STAGE_KEYS)}; got {spec!r}")
        if not all(isinstance(o, str) for o in spec.get("overrides") or []):
            raise ConfigError(f"stages.{name}.overrides must be a list of override strings like 'data=sst2'")
        source = spec.get("init_from")
        if source is not None and source not in seen:
            raise ConfigError(f"stages.{name}.init_from={source!r} names no earlier stage; stages before it: "
                              f"{', '.join(seen) or 'none'}")
        stages[name] = spec
        seen.append(name)
    return stages


def _checkpoint_of(metrics: dict[str, Any], out: Path, stage: str) -> str:
    best = metrics.get("best_checkpoint")
    if best and Path(best).is_file():
        return str(best)
    last = out / "checkpoints" / "last.ckpt"
    if last.is_file():
        return str(last)
    raise ConfigError(f"stage {stage!r} left no checkpoint in {out / 'checkpoints'} for the next stage to start from "
                      "(are the checkpoint callbacks off? keep callbacks=default)")


def run_stages(cfg: DictConfig, *, overrides: list[str] | None = None) -> dict[str, Any]:
    """Run the stages of ``cfg`` in order; returns ``{stage: its metrics}``. ``overrides``: the job's own
    (default: Hydra's record of them)."""
    from tasks.runner import run

    out = Path(cfg.paths.output_dir)
    base = list(overrides) if overrides is not None else job_overrides(cfg)
    if base is None:
        raise ConfigError("running stages needs the overrides the config was composed with: compose with "
                          "return_hydra_config=True or pass run_stages(cfg, overrides=[...])")
    specs = _stage_specs(cfg)
    results: dict[str, dict[str, Any]] = {}
    checkpoints: dict[str, str] = {}
    for name, spec in specs.items():
        stage_out = out / name
        own = list(spec.get("overrides", []))
        if spec.get("init_from"):
            own.append(f"init_from={checkpoints[spec['init_from']]}")
        added = [*own, "stages=null", f"paths.output_dir={stage_out}"]
        print(f"[stage {name}] {' '.join(own)}  -> {stage_out}", flush=True)
        t0 = time.perf_counter()
        done = stage_out / "metrics.json"
        if done.is_file():  # finished in an earlier, interrupted invocation
            metrics = json.loads(done.read_text())
            print(f"[stage {name}] done before: {done}", flush=True)
        else:
            metrics = run(_recompose(base, added, with_hydra=True))
        metrics["stage_time_s"] = round(time.perf_counter() - t0, 1)
        results[name] = metrics
        checkpoints[name] = _checkpoint_of(metrics, stage_out, name)
    lines = []
    for name, m in results.items():
        scores = "  ".join(f"{k}={v:.4f}" for k, v in m.items() if k.startswith("test/") and isinstance(v, float))
        lines.append(f"[stage {name}] {scores}  train_time={m.get('train_time_s', 0):.1f}s  "
                     f"stage_time={m['stage_time_s']:.1f}s")
    summary = {"stages": results, "total_time_s": round(sum(m["stage_time_s"] for m in results.values()), 1)}
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "stages.json", lambda f: f.write((json.dumps(summary, indent=2) + "\n").encode()))
    print("\n".join(lines) + f"\n[stages] total {summary['total_time_s']:.1f}s -> {out / 'stages.json'}", flush=True)
    return results
