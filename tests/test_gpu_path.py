"""The GPU data path, exercised without a GPU, and the pieces of benchmarks/gpu_check.sh.

On an accelerator the DataModules keep their tensors on the device and slice batches there. Here the same
code runs on the CPU (``on_device=True``: no copy) and must give the very batches the host path gives, and
on the ``meta`` device, which stands in for a device that is not the CPU: nothing may be copied back or
assume host memory, and uint8 images stay uint8 there.
"""

from __future__ import annotations

import gc
import inspect
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from omegaconf import OmegaConf

from tasks.data.char_lm import CharLMDataModule
from tasks.data.loader import _COPIES, TensorBatchLoader, data_device, resident
from tasks.data.timeseries import ForecastingDataModule
from tasks.data.vision import VisionDataModule

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
import gpu_check  # noqa: E402  (benchmarks/gpu_check.py: standard library only at import)


def _cpu_trainer() -> L.Trainer:
    return L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False)


def _device_trainer(device: str) -> SimpleNamespace:
    """What the DataModules read from a trainer, with ``device`` as its root device."""
    progress = SimpleNamespace(batch_progress=SimpleNamespace(current=SimpleNamespace(ready=0)))
    return SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device(device)), global_rank=0,
                           world_size=1, current_epoch=0, fit_loop=SimpleNamespace(epoch_loop=progress),
                           training=True)


def _batches(loader, n: int | None = None) -> list[tuple[torch.Tensor, ...]]:
    out = []
    for i, b in enumerate(loader):
        if n is not None and i == n:
            break
        out.append(tuple(b))
    return out


def _assert_same(a, b) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        for s, t in zip(x, y, strict=True):
            assert s.dtype == t.dtype and torch.equal(s, t)


# -- the loader --------------------------------------------------------------------------------------

@pytest.mark.parametrize("kw", [dict(shuffle=True, drop_last=True, seed=3),
                                dict(shuffle=True, rank=1, world_size=2, seed=5),
                                dict(shuffle=True, seed=1, lengths=torch.arange(103) % 7, bucket_batches=2),
                                dict()])
def test_device_loader_gives_the_host_loaders_batches(kw):
    x = torch.randint(0, 256, (103, 1, 4, 4), dtype=torch.uint8)
    y = torch.arange(103)
    host = TensorBatchLoader(x, y, batch_size=10, **kw)
    dev = TensorBatchLoader(x, y, batch_size=10, device=torch.device("cpu"), **kw)
    for _ in range(2):  # two epochs: the permutation changes, identically on both
        _assert_same(_batches(host), _batches(dev))
    meta = TensorBatchLoader(x, y, batch_size=10, device="meta", **kw)
    (bx, by), *rest = _batches(meta)
    assert bx.device.type == "meta" and bx.dtype == torch.uint8 and bx.shape == (10, 1, 4, 4)
    assert by.device.type == "meta" and len(rest) + 1 == len(host)


def test_resident_copies_once_and_forgets_freed_host_tensors():
    t = torch.ones(5, dtype=torch.uint8)
    assert resident(t, None) is t and resident(t, "cpu") is t  # already there: no copy
    copy = resident(t, "meta")
    assert copy.device.type == "meta" and resident(t, torch.device("meta")) is copy
    assert TensorBatchLoader(t, batch_size=2, device="meta").tensors[0] is copy  # the loader reuses it
    key = (id(t), torch.device("meta"))
    assert key in _COPIES
    del t, copy
    gc.collect()
    assert key not in _COPIES


def test_data_device_is_the_accelerator_and_host_memory_on_cpus():
    cuda, cpu = _device_trainer("cuda:0"), _device_trainer("cpu")
    assert data_device(cuda) == torch.device("cuda:0")
    assert data_device(cpu) is None and data_device(None) is None
    assert data_device(cpu, on_device=True) == torch.device("cpu")  # how the tests run the device path
    assert data_device(cuda, on_device=False) is None
    assert data_device(_cpu_trainer()) is None


# -- the DataModules ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def mnist(data_dir):
    dm = VisionDataModule(dataset="mnist", root=str(data_dir), batch_size=64, eval_batch_size=500,
                          augment="crop_flip", download=False)
    dm.setup("fit")
    return dm


def test_vision_device_path_gives_the_copy_paths_batches(mnist, monkeypatch):
    mnist.trainer = _cpu_trainer()
    try:
        host = [mnist.train_dataloader(), mnist.val_dataloader(), mnist.test_dataloader()]
        monkeypatch.setattr(mnist, "on_device", True)
        dev = [mnist.train_dataloader(), mnist.val_dataloader(), mnist.test_dataloader()]
    finally:
        mnist.trainer = None
    assert [d.device for d in dev] == [torch.device("cpu")] * 3 and host[0].device is None
    for h, d in zip(host, dev, strict=True):
        _assert_same(_batches(h, 3), _batches(d, 3))
    x = _batches(dev[0], 1)[0][0]
    torch.manual_seed(0)
    a = mnist.transform(x, train=True)
    torch.manual_seed(0)
    assert torch.equal(a, mnist.transform(_batches(host[0], 1)[0][0], train=True))


@pytest.mark.parametrize("augment", [None, "crop_flip", "flip_translate"])
def test_vision_batches_stay_on_the_device_through_the_transform(mnist, monkeypatch, augment):
    monkeypatch.setattr(mnist, "augment", augment)
    mnist.trainer = _device_trainer("meta")
    try:
        loader = mnist.train_dataloader()
        x, y = _batches(loader, 1)[0]
        assert x.device.type == "meta" and x.dtype == torch.uint8 and y.device.type == "meta"
        assert mnist.train_set[0].device.type == "cpu"  # the host split is kept as it was
        out = mnist.transform(x, train=True)
    finally:
        mnist.trainer = None
    assert out.device.type == "meta" and out.dtype == torch.float32 and out.shape == (64, 1, 28, 28)


def test_forecasting_and_char_lm_device_paths(data_dir, monkeypatch):
    ett = ForecastingDataModule(root=str(data_dir), batch_size=16, eval_batch_size=64, download=False)
    shakespeare = CharLMDataModule(root=str(data_dir), block_size=32, batch_size=8, eval_batch_size=8,
                                   batches_per_epoch=4, download=False)
    for dm in (ett, shakespeare):
        dm.setup("fit")
        dm.trainer = _cpu_trainer()
        host = [dm.train_dataloader(), dm.val_dataloader()]
        monkeypatch.setattr(dm, "on_device", True)
        dev = [dm.train_dataloader(), dm.val_dataloader()]
        for h, d in zip(host, dev, strict=True):
            _assert_same(_batches(h, 3), _batches(d, 3))
            assert all(t.is_floating_point() or t.dtype == torch.long for b in _batches(d, 1) for t in b)
        dm.trainer = _device_trainer("meta")  # the windows are views of one copy of the series there
        w = _batches(dm.train_dataloader(), 1)[0]
        assert all(t.device.type == "meta" for t in w)
        dm.trainer = None
    assert ett.windows["train"][0].device.type == "cpu"


# -- torch.compile -----------------------------------------------------------------------------------

def test_compile_option_compiles_in_place_and_keeps_checkpoint_names():
    from tasks.classification import ClassificationTask

    model = {"name": "lenet5", "num_classes": 10, "in_chans": 1, "img_size": 28}
    eager, compiled = ClassificationTask(model=model), ClassificationTask(model=model, compile=True)
    assert eager.model._compiled_call_impl is None and compiled.model._compiled_call_impl is not None
    assert list(eager.state_dict()) == list(compiled.state_dict())  # no _orig_mod. prefix
    assert compiled.hparams.compile is True


def test_every_task_config_offers_compile_where_its_task_takes_it():
    from tasks.resolve import task_configs

    for name, cls in task_configs().items():
        takes = "compile" in inspect.signature(cls.__init__).parameters
        stated = OmegaConf.load(REPO / "conf" / "task" / f"{name}.yaml").task
        assert ("compile" in stated) == takes, name
        if takes:
            assert stated.compile is False, f"{name}: torch.compile is off by default (slower on the CPU)"


# -- benchmarks/gpu_check.sh -------------------------------------------------------------------------

def test_family_sweep_covers_every_family_and_kind():
    import zoo

    runs = gpu_check.family_runs()
    families = {zoo.model_info(n).family for n in zoo.list_models()}
    assert {r["family"] for r in runs} == families
    kinds = {k for n in zoo.list_models() for k in zoo.model_info(n).tasks} - {"regress"}
    assert {r["kind"] for r in runs} >= kinds - {"generate", "reconstruct", "denoise"}
    for r in runs:
        assert (REPO / "conf" / "data" / f"{r['data']}.yaml").is_file(), r
        assert r["kind"] in zoo.model_info(r["model"]).tasks or r["kind"] == "generative"


def test_carried_data_is_enough_and_verifies(data_dir, tmp_path):
    """`gpu_check.sh prepare` copies DATA_FILES: every run's data module finds and verifies its files there."""
    from hydra.utils import instantiate

    res = subprocess.run(["bash", "benchmarks/gpu_check.sh", "prepare", "--data", str(data_dir), "--dest",
                          str(tmp_path), "--no-wheels"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "checksums.sha256").read_text().count("\n") == len(gpu_check.DATA_FILES)
    for data in sorted({r["data"] for r in gpu_check.family_runs()}):
        cfg = OmegaConf.load(REPO / "conf" / "data" / f"{data}.yaml").data
        cfg.root, cfg.download = str(tmp_path), False
        if "cache_dir" in cfg:
            cfg.cache_dir = str(tmp_path / "cache")
        if "seed" in cfg:
            cfg.seed = 0
        instantiate(cfg, _convert_="all").prepare_data()  # checks the files against the manifest


def test_wheel_choice_fits_this_interpreter(tmp_path, monkeypatch):
    names = ["hydra_core-1.3.8-py3-none-any.whl", "tokenizers-0.23.3-cp310-abi3-manylinux_2_17_x86_64.whl",
             *[f"regex-2026.5.9-cp3{m}-cp3{m}-manylinux2014_x86_64.whl" for m in (10, 11, 12, 13)],
             "lxml-6.1.3-cp39-cp39-manylinux2014_x86_64.whl", "colorama-0.4.6-py2.py3-none-any.whl"]
    for n in names:
        (tmp_path / n).touch()
    monkeypatch.setattr(gpu_check.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(gpu_check.sys, "version_info", SimpleNamespace(major=3, minor=12))
    pick = {d: (w.name if (w := gpu_check.wheel_for(d, tmp_path)) else None)
            for d in ("hydra-core", "tokenizers", "regex", "lxml", "colorama", "PyYAML")}
    assert pick == {"hydra-core": names[0], "tokenizers": names[1], "regex": names[4], "lxml": None,
                    "colorama": names[-1], "PyYAML": None}
    # here everything imports; hydra-core is of the stack, whose tested version is its wheel's
    monkeypatch.setattr(gpu_check, "_version", lambda dist: "1.3.7" if dist == "hydra-core" else "0")
    assert gpu_check.packages_to_install(tmp_path) == [("hydra-core", "1.3.7 here, 1.3.8 tested")]
    real_find_spec = gpu_check.importlib.util.find_spec
    monkeypatch.setattr(gpu_check.importlib.util, "find_spec",
                        lambda name: None if name in ("regex", "yaml") else real_find_spec(name))
    assert gpu_check.install(tmp_path, tmp_path / "site", dry_run=True) == [names[0], names[4]]
    assert gpu_check.pins()[0].startswith("hydra-core==")


def test_gpu_check_dry_run_lists_every_stage(tmp_path):
    res = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--dry-run", "--data", str(tmp_path)], cwd=REPO,
                         capture_output=True, text=True, timeout=30, env={"OUT": str(tmp_path / "out"), "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, res.stderr
    for stage in ("install", "families", "mnist", "speed-airbench94", "speed-resnet20", "ratio"):
        assert f"== {stage}: " in res.stdout
    assert "train.py trainer=gpu" in res.stdout and "--device cuda" in res.stdout
