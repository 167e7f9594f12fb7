"""Export and import: every registered model through torch.export and ONNX (onnxruntime within 1e-4 of eager),
and zoo.load_model on checkpoints of every family in a fresh process that imports neither Lightning nor Hydra.

ONNX export is the slow part (2-20 s a model on 2 cores): the fast suite exports the smallest model of every
family, from its checkpoint, in the fresh process; the other variants of a family run under ``-m slow``.
"""

import json
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from torch.utils._pytree import tree_flatten

import zoo
from tasks.base import ZooTask
from tasks.runner import run
from tests.conftest import fast_overrides
from zoo.cli import count_params_fast
from zoo.export import eager_outputs, load_program, max_onnx_error, to_onnx, to_torch_export

ROOT = Path(__file__).resolve().parents[1]
ALL = zoo.list_models()
FAMILIES = sorted({zoo.model_info(n).family for n in ALL})
SMALLEST = {f: min(zoo.list_models(family=f), key=count_params_fast) for f in FAMILIES}
ONNX_OTHERS = [n for n in ALL if n not in SMALLEST.values()]  # the smallest go through the fresh process below


def _model(name):
    torch.manual_seed(0)
    model = zoo.create_model(name).eval()
    model.zoo_name = name
    return model


@pytest.mark.parametrize("name", ALL)
def test_torch_export_matches_eager_at_another_batch_size(name, tmp_path):
    model = _model(name)
    saved = name in SMALLEST.values()  # a save/load round trip per family (it costs seconds for big models)
    program = to_torch_export(model, path=tmp_path / f"{name}.pt2" if saved else None)  # exported at batch 2
    if saved:
        program = load_program(tmp_path / f"{name}.pt2")
    inputs = zoo.example_inputs(name, batch=3)
    got = [t for t in tree_flatten(program.module()(*inputs))[0] if isinstance(t, torch.Tensor)]
    expected = eager_outputs(model, inputs)
    assert len(got) == len(expected)
    for g, e in zip(got, expected, strict=True):
        assert g.shape == e.shape
        torch.testing.assert_close(g, e, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("name", ONNX_OTHERS)
def test_onnx_runtime_matches_eager_within_1e_4(name, tmp_path):
    model = _model(name)
    path = to_onnx(model, tmp_path / f"{name}.onnx")
    assert max_onnx_error(model, path) <= 1e-4  # fresh inputs at batch 3: the batch dimension is dynamic


def _lightning_checkpoint(task: L.LightningModule, path: Path) -> Path:
    """A checkpoint through Lightning's own writer, as ModelCheckpoint writes it, without training."""
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.strategy.connect(task)
    trainer.save_checkpoint(path)
    return path


CHILD = r"""
import json, sys, torch
import zoo
from zoo.export import eager_outputs, max_onnx_error, to_onnx

report = {}
for case in json.load(open(sys.argv[1])):
    model = zoo.load_model(case["ckpt"])
    inputs = torch.load(case["inputs"], weights_only=True)
    expected = torch.load(case["outputs"], weights_only=True)
    got = eager_outputs(model, inputs)
    err = max((g - e).abs().max().item() for g, e in zip(got, expected, strict=True))
    scale = max(e.float().abs().max().item() for e in expected)
    entry = {"name": model.zoo_name, "kwargs": model.zoo_kwargs, "training": model.training, "max_error": err,
             "scale": scale}
    if case["onnx"]:  # exported at the checkpoint's batch, compared at two more rows: the batch is dynamic
        more = tuple(torch.cat([t, t[:2]]) if isinstance(t, torch.Tensor) else t for t in inputs)
        entry["onnx_error"] = max_onnx_error(model, to_onnx(model, case["ckpt"] + ".onnx", inputs), more)
    report[case["ckpt"]] = entry
report["imported"] = sorted({m.split(".")[0] for m in sys.modules} & {"lightning", "lightning_fabric",
                                                                      "pytorch_lightning", "hydra"})
print(json.dumps(report))
"""


def test_checkpoints_of_every_family_load_without_lightning_or_hydra(compose_cfg, tmp_path):
    cases = []

    def add(ckpt: Path, model: torch.nn.Module, inputs: tuple, kwargs: dict, *, onnx: bool = False) -> None:
        torch.save(tuple(inputs), f"{ckpt}.inputs.pt")
        torch.save(eager_outputs(model, inputs), f"{ckpt}.outputs.pt")
        cases.append({"ckpt": str(ckpt), "inputs": f"{ckpt}.inputs.pt", "outputs": f"{ckpt}.outputs.pt",
                      "name": ckpt.stem, "kwargs": kwargs, "onnx": onnx})

    # one model of every family, saved by Lightning from its task with its full kwargs
    for name in SMALLEST.values():
        torch.manual_seed(0)
        kwargs = zoo.model_info(name).defaults
        task = ZooTask(model={"name": name, **kwargs})
        with torch.no_grad():  # off the initialisation: zero-initialised heads would make every output 0
            for p in task.model.parameters():
                p.add_(torch.randn_like(p) * 0.01)
        add(_lightning_checkpoint(task, tmp_path / f"{name}.ckpt"), task.model, zoo.example_inputs(name, batch=3),
            kwargs, onnx=True)
    # a real training run: the best checkpoint ModelCheckpoint wrote, kwargs that differ from the defaults
    cfg = compose_cfg(*fast_overrides("model=resnet20", "data.batch_size=16", "data.eval_batch_size=50",
                                      f"paths.output_dir={tmp_path / 'run'}"))
    best = Path(run(cfg)["best_checkpoint"])
    trained = zoo.load_model(best)
    add(best, trained, (torch.randn(3, 1, 28, 28),), trained.zoo_kwargs, onnx=True)

    manifest = tmp_path / "cases.json"
    manifest.write_text(json.dumps(cases))
    r = subprocess.run([sys.executable, "-c", CHILD, str(manifest)], cwd=ROOT, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads(r.stdout.strip().splitlines()[-1])
    assert report.pop("imported") == []  # zoo.load_model and the exporters need neither Lightning nor Hydra
    for case in cases:
        got = report[case["ckpt"]]
        assert got["name"] == (case["name"] if case["name"] in SMALLEST.values() else "resnet20")
        assert got["kwargs"] == json.loads(json.dumps(case["kwargs"])) and got["training"] is False  # via JSON: tuples are lists
        assert got["scale"] > 1e-3  # the outputs are not trivially zero
        assert got["max_error"] <= 1e-6 * max(1.0, got["scale"]), (case["ckpt"], got)
        assert got["onnx_error"] <= 1e-4, (case["ckpt"], got)  # onnxruntime on the loaded checkpoint
    assert report[str(best)]["kwargs"]["in_chans"] == 1
    for case in cases:  # shown with `pytest -s`: the figures behind the claim
        got = report[case["ckpt"]]
        print(f"{got['name']:>22s}  max |output| {got['scale']:.2e}  eager error {got['max_error']:.1e}  onnxruntime error {got['onnx_error']:.1e}")


def test_save_model_round_trip_and_clear_refusals(tmp_path):
    model = zoo.create_model("lenet5", classic=True).eval()
    path = zoo.save_model(model, tmp_path / "lenet.pt", name="lenet5", kwargs={"classic": True})
    loaded = zoo.load_model(path)
    x = torch.randn(2, 1, 28, 28)
    torch.testing.assert_close(loaded(x), model(x))
    assert (loaded.zoo_name, loaded.zoo_kwargs) == ("lenet5", {"classic": True})
    again = zoo.load_model(zoo.save_model(loaded, tmp_path / "again.pt"))  # name and kwargs from the model
    torch.testing.assert_close(again(x), model(x))

    with pytest.raises(zoo.ZooError, match="registry name"):
        zoo.save_model(torch.nn.Linear(2, 2), tmp_path / "x.pt")
    with pytest.raises(zoo.ZooError, match="checkpoint not found"):
        zoo.load_model(tmp_path / "missing.ckpt")
    torch.save({"state_dict": {}, "thing": object.__new__(torch.nn.Identity)}, tmp_path / "unsafe.ckpt")
    with pytest.raises(zoo.ZooError, match="refusing to load"):
        zoo.load_model(tmp_path / "unsafe.ckpt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "foreign.ckpt")
    with pytest.raises(zoo.ZooError, match="holds a bare state_dict .*no description of the model"):
        zoo.load_model(tmp_path / "foreign.ckpt")  # tensors by name and nothing else: named as such
    torch.save({"model": "lenet5", "kwargs": {}, "state_dict": {"nope": torch.zeros(1)}}, tmp_path / "bad.pt")
    with pytest.raises(zoo.ZooError, match="do not fit lenet5"):
        zoo.load_model(tmp_path / "bad.pt")
