"""Start-up stays cheap: ``import zoo`` imports no torch, and train.py imports only the task and data it runs.

What is lazy is asserted on ``sys.modules`` of a fresh interpreter, never on times (benchmarks/startup.py
measures those). Every public name still imports as before, on first access.
"""

import json
import subprocess
import sys
from pathlib import Path

import tasks
import tasks.data
import zoo

ROOT = Path(__file__).resolve().parents[1]

# Each step imports something, then records which of these top-level packages and project modules are loaded.
CHILD = r"""
import json, sys
WATCHED = {"torch", "timm", "torchvision", "onnx", "onnxscript", "onnxruntime", "matplotlib", "yaml", "scipy",
           "lightning", "hydra", "tasks"}
seen = {}
def record(step):
    seen[step] = sorted({m.split(".")[0] for m in sys.modules} & WATCHED)
    seen[step + " (project)"] = sorted(m for m in sys.modules if m.startswith(("zoo.", "tasks.")))

import zoo
record("import zoo")
import tasks.cli_checks, tasks.config  # what train.py imports before Hydra composes the config
record("train.py before compose")
from zoo import export
assert callable(zoo.export.to_onnx) and export is zoo.export
from zoo import CheckpointError, load_model, save_model
assert zoo.load_model is load_model and issubclass(CheckpointError, zoo.ZooError) and callable(save_model)
assert zoo.report.write_report is not None
record("zoo.export")
from hydra.utils import get_class
assert get_class("tasks.ClassificationTask").__module__ == "tasks.classification"
assert get_class("tasks.data.VisionDataModule").__module__ == "tasks.data.vision"
record("hydra target")
print(json.dumps(seen))
"""


def test_imports_stay_lazy():
    r = subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    seen = json.loads(r.stdout.strip().splitlines()[-1])
    assert seen["import zoo"] == [], f"`import zoo` imported {seen['import zoo']}: keep them lazy (zoo/__init__.py)"
    assert set(seen["import zoo (project)"]) <= {"zoo.registry", "zoo.select", "zoo.vocab"}, seen["import zoo (project)"]
    # zoo.export imports torch, but ONNX only when a model is exported; zoo.report, not matplotlib
    assert {"onnx", "onnxscript", "onnxruntime", "matplotlib", "lightning"}.isdisjoint(seen["zoo.export"])
    # a misspelt override is reported before Lightning or torch is imported
    assert {"torch", "lightning"}.isdisjoint(seen["train.py before compose"]), seen["train.py before compose"]
    loaded = seen["hydra target (project)"]
    others = [m for m in loaded if m.startswith(("tasks.seq2seq", "tasks.language_model", "tasks.word2vec",
                                                 "tasks.forecasting", "tasks.generative", "tasks.frechet",
                                                 "tasks.data.translation", "tasks.data.char_lm", "tasks.data.timeseries",
                                                 "tasks.data.text", "tasks.data.skipgram", "tasks.data.tokenize"))]
    assert not others, f"instantiating the classification task and vision data imported {others}"


def test_every_public_name_still_imports():
    for module in (zoo, tasks, tasks.data):
        missing = [name for name in module.__all__ if getattr(module, name, None) is None]
        assert not missing, f"{module.__name__}.__all__ names that do not import: {missing}"
        assert set(module.__all__) <= set(dir(module))
    assert set(tasks.__all__) == set(tasks._LAZY_NAMES) and set(tasks.data.__all__) == set(tasks.data._LAZY_NAMES)
    assert tasks.ClassificationTask.__module__ == "tasks.classification"
    assert zoo.export.to_onnx.__module__ == "zoo.export"
