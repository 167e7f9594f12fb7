"""Bad input stops before any data is read, with one message naming the key, the value and the fix; a
NaN/Inf loss stops the run at its step with the weights intact; the same seed gives bit-identical runs;
checkpoints are written atomically and read back as plain PyTorch, old layouts included."""

import errno
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch

import zoo
from tasks.callbacks import NonFiniteLossError, RunInterrupted
from tasks.checkpoints import check_resumable
from tasks.cli_checks import check_overrides, report_user_error
from tasks.runner import build, run
from tasks.validate import ConfigError, validate_config
from tests.conftest import CONF_DIR, fast_overrides
from zoo.checkpoint import CheckpointError, read_checkpoint
from zoo.registry import UnknownModelError

ROOT = Path(__file__).resolve().parents[1]

# (overrides, what the one-line message must say). paths.data_dir points nowhere: a check that ran after
# the data were read would fail with a DataError instead.
BAD_INPUTS = [
    (["trainer.max_epochs=abc"], r"trainer.max_epochs='abc' \(str\) is not valid: expected an integer or null"),
    (["data.batch_size=-3"], r"data.batch_size=-3 is out of range: expected at least 1"),
    (["task.optimizer.lr=fast"], r"task.optimizer.lr='fast' \(str\) is not valid: expected a number"),
    (["trainer.precision=17"], r"trainer.precision=17 .*expected one of 64, 32, 16, .*'bf16-mixed'"),
    (["seed=abc"], r"seed='abc' .*expected an integer"),
    (["checkpoint_every=0"], r"checkpoint_every=0 is out of range"),
    (["task.scheduler.name=cosin"], r"task.scheduler.name='cosin' is not a schedule. Did you mean: cosine"),
    (["task.optimizer.name=adamm"], r"task.optimizer.name='adamm' .*Did you mean: .*adam"),
    (["+trainer.max_epoch=3"], r"trainer.max_epoch is not an argument of lightning.Trainer. Did you mean: max_epochs"),
    (["+data.batchsize=8"], r"data.batchsize is not an argument of tasks.data.VisionDataModule. Did you mean: batch_size"),
    (["model.in_chans=3"], r"model.in_chans=3 but mnist has in_chans=1.*Remove the override of model.in_chans"),
    (["model.num_classes=5"], r"model.num_classes=5 but mnist has num_classes=10"),
    (["model.img_size=32"], r"model.img_size=32 but mnist has img_size=28"),
    (["model=gpt"], r"model 'gpt' cannot train on mnist: gpt is a text model for lm, and mnist is image data "
                    r"for classify. Models for mnist: .*lenet5.*Data for gpt: .*tiny_shakespeare"),
    (["data=sst2", "model=resnet20"], r"model 'resnet20' cannot train on sst2: .*image model.*text data"),
    (["data=cifar10", "model=vit_tiny", "model.patch_size=5"],
     r"model.patch_size=5 does not divide the image size 32 .*: 2, 4, 8, 16, 32"),
    (["task=language_model"], r"model 'lenet5' cannot train on mnist"),
]


@pytest.mark.parametrize(("overrides", "message"), BAD_INPUTS, ids=[" ".join(o) for o, _ in BAD_INPUTS])
def test_bad_input_fails_before_any_data_is_read(overrides, message, compose_cfg, tmp_path):
    cfg = compose_cfg(*overrides, f"paths.data_dir={tmp_path / 'nowhere'}")
    with pytest.raises(ConfigError, match=message) as err:
        run(cfg)
    assert "\n" not in str(err.value)


def test_a_model_smaller_than_the_data_vocabulary_is_refused_once_the_data_states_it(compose_cfg, tmp_path):
    cfg = compose_cfg("data=tiny_shakespeare", "model=gpt", "model.vocab_size=50")  # the text is read: 65 chars
    with pytest.raises(ConfigError, match=r"model.vocab_size=50 is smaller than the vocabulary of tiny_shakespeare "
                                          r"\(vocab_size=65\).*Remove the override of model.vocab_size") as err:
        run(cfg)
    assert "\n" not in str(err.value)


def test_good_pairs_pass_validation(compose_cfg):
    # the checks must not refuse what works: every data config with its own model, and a patch size that fits
    for overrides in (["data=mnist"], ["data=cifar10", "model=vit_tiny", "model.patch_size=8"], ["data=sst2"],
                      ["data=tiny_shakespeare"], ["data=multi30k"], ["data=etth1"], ["model=vae"], ["trainer=ddp"]):
        validate_config(compose_cfg(*overrides))


def test_gpu_trainer_on_a_machine_without_one(compose_cfg):
    cfg = compose_cfg("trainer=gpu")
    if torch.cuda.is_available() or torch.backends.mps.is_available():
        validate_config(cfg)
        return
    with pytest.raises(ConfigError, match="trainer.accelerator='gpu' but this machine has no usable GPU"):
        validate_config(cfg)


def test_unknown_model_name_lists_close_matches(compose_cfg):
    with pytest.raises(UnknownModelError, match="unknown model 'lenet6'. Did you mean: lenet5"):
        validate_config(compose_cfg("model.name=lenet6"))


def test_unknown_override_key_gets_close_matches_before_hydra(capsys):
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with pytest.raises(SystemExit) as exit_:
        check_overrides(["model=mlp", "trainer.max_epoch=3"], CONF_DIR)
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert "unknown config key 'trainer.max_epoch'. Did you mean: trainer.max_epochs" in err
    assert "+trainer.max_epoch=" in err
    check_overrides(["model=mlp", "model.width=64", "seed=1"], CONF_DIR)  # keys that exist pass
    # keys whose value interpolates Hydra's runtime (unset before the run) exist too
    check_overrides(["paths.output_dir=/tmp/run", "seed=2"], CONF_DIR)


def test_output_folder_of_another_run_is_refused(compose_cfg, tmp_path):
    (tmp_path / "metrics.json").write_text("{}")
    with pytest.raises(ConfigError, match=f"output folder {tmp_path} already holds a run .*resume={tmp_path}"):
        validate_config(compose_cfg())
    validate_config(compose_cfg("ckpt_path=last"))  # resuming into it is the point


def test_checkpoint_of_another_shape_is_refused(compose_cfg, tmp_path):
    from hydra.utils import instantiate

    from tasks.runner import model_config

    cfg = compose_cfg()
    model_cfg = model_config(cfg, instantiate(cfg.data, _convert_="all"))
    task = instantiate(cfg.task, model=model_cfg, _convert_="all")
    other = instantiate(cfg.task, model={**model_cfg, "num_classes": 5}, _convert_="all")
    p = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": other.state_dict()}, p)  # no hyper_parameters to compare: shapes decide
    with pytest.raises(CheckpointError, match=r"does not fit the model 'lenet5' .*\(5, .*\(10, "):
        check_resumable(p, model_cfg, task=task)
    torch.save({"state_dict": task.state_dict()}, p)
    check_resumable(p, model_cfg, task=task)


def test_user_errors_exit_with_one_line_and_their_status(capsys, monkeypatch):
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    monkeypatch.delenv("ZOO_DEBUG", raising=False)
    from lightning.fabric.utilities.exceptions import MisconfigurationException
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    for raised, code, text in [
        (ConfigError("data.batch_size=-3 is out of range"), 2, "error: data.batch_size=-3 is out of range"),
        (RunInterrupted("SIGTERM received: stopped", signum=15), 143, "error: SIGTERM received: stopped"),
        (MisconfigurationException("GPUAccelerator can not run"), 2, "error: GPUAccelerator can not run"),
        (SIGTERMException(), 143, "error: SIGTERM received"),
    ]:
        with pytest.raises(SystemExit) as exit_:
            with report_user_error():
                raise raised
        assert exit_.value.code == code
        assert capsys.readouterr().err.startswith(text)
    with pytest.raises(ValueError):  # a bug is not a user error: its traceback stays
        with report_user_error():
            raise ValueError("a bug")


def test_wrong_type_on_the_command_line_is_one_line_exit_2(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("HYDRA_FULL_ERROR", "ZOO_DEBUG")}
    r = subprocess.run([sys.executable, "train.py", "trainer.max_epochs=abc", f"hydra.run.dir={tmp_path}"], cwd=ROOT,
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2, r.stderr[-2000:]
    assert r.stderr.startswith("error: trainer.max_epochs='abc' (str) is not valid: expected an integer or null")
    assert "Traceback" not in r.stderr + r.stdout
    assert not (tmp_path / "checkpoints").exists()


# -- numerical faults ------------------------------------------------------------------------------------------

class PoisonBatch(L.Callback):
    """Replaces the inputs of training batch ``at`` with NaN (a corrupt sample, an overflowing feature)."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.at:
            batch[0].fill_(float("nan"))


def test_nan_loss_stops_at_its_step_before_the_update(compose_cfg):
    cfg = compose_cfg(*fast_overrides("trainer.limit_train_batches=8", "trainer.gradient_clip_val=1.0",
                                      "trainer.detect_anomaly=false", "checkpoint_every=1", "logger=none"))
    datamodule, task, trainer, _ = build(cfg)
    trainer.callbacks.append(PoisonBatch(at=5))
    with pytest.raises(NonFiniteLossError) as err:
        trainer.fit(task, datamodule=datamodule)
    msg = str(err.value)
    assert "the training loss is nan at step 5 (epoch 0)" in msg
    assert "task.optimizer.lr" in msg and "trainer.gradient_clip_val=1.0" in msg and "detect_anomaly" in msg
    assert trainer.global_step == 5
    # clipping cannot save a NaN loss: without the guard the update would have made every weight NaN
    assert all(torch.isfinite(p).all() for p in task.parameters())
    path = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    last = read_checkpoint(path)
    assert last["global_step"] == 5  # saved after the last good step, never after the bad one
    assert all(torch.isfinite(v).all() for v in last["state_dict"].values() if v.is_floating_point())
    # the task describes its model in the checkpoint: zoo.load_model rebuilds it alone, no Lightning, no Hydra
    assert last["zoo"] == {"model": task.model_name, "kwargs": task.model_kwargs, "prefix": "model.",
                           "preprocessing": task.trainer.datamodule.preprocessing()}  # the data's input contract
    model = zoo.load_model(path)
    assert model.zoo_name == "lenet5" and model.zoo_kwargs == task.model_kwargs
    for k, v in model.state_dict().items():
        assert torch.equal(v, task.model.state_dict()[k]), k


def test_diverging_learning_rate_is_stopped_with_advice(compose_cfg):
    cfg = compose_cfg(*fast_overrides("model=mlp", "trainer.limit_train_batches=30", "task.optimizer.name=sgd",
                                      "task.optimizer.lr=1e6", "task.scheduler.name=constant", "logger=none"))
    with pytest.raises(NonFiniteLossError, match=r"the training loss is (nan|inf) at step \d+ .*try 10x lower"):
        run(cfg)


# -- determinism -----------------------------------------------------------------------------------------------

@pytest.fixture
def deterministic_algorithms():
    yield
    torch.use_deterministic_algorithms(False)  # Lightning turns it on for the process and never off


def test_same_seed_bit_identical_with_deterministic_algorithms(compose_cfg, tmp_path, deterministic_algorithms):
    # mlp has dropout: the global RNG stream matters; CSV logs every logged metric
    def once(name: str, seed: int) -> tuple[str, dict[str, torch.Tensor], dict]:
        out = tmp_path / name
        m = run(compose_cfg(*fast_overrides("model=mlp", "trainer.limit_train_batches=8", "trainer.deterministic=true",
                                            "trainer.log_every_n_steps=2", "trainer.limit_val_batches=2",
                                            f"seed={seed}", f"paths.output_dir={out}")))
        assert torch.are_deterministic_algorithms_enabled()
        weights = read_checkpoint(out / "checkpoints" / "last.ckpt")["state_dict"]
        return (out / "csv" / "metrics.csv").read_text(), weights, {k: v for k, v in m.items() if "/" in k}

    a, b, c = once("a", 5), once("b", 5), once("c", 6)
    assert a[0] == b[0] and a[0].count("\n") > 3, "every logged metric, bit for bit"
    assert a[2] == b[2]
    assert a[1].keys() == b[1].keys() and all(torch.equal(a[1][k], b[1][k]) for k in a[1])
    assert a[0] != c[0] and not all(torch.equal(a[1][k], c[1][k]) for k in a[1])  # the seed does matter


def test_cluster_configs_compose_and_build(compose_cfg):
    from hydra.utils import instantiate
    from lightning.pytorch.strategies import DDPStrategy, FSDPStrategy

    ddp = compose_cfg("trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2")
    trainer = instantiate(ddp.trainer, callbacks=[], logger=False)
    assert isinstance(trainer.strategy, DDPStrategy) and trainer.world_size == 2
    fsdp = compose_cfg("model=vit_small", "data=cifar10", "trainer=fsdp", "trainer.accelerator=auto")
    validate_config(fsdp)  # the strategy's keys and types (accelerator=auto: this may be a CPU machine)
    strategy = instantiate(fsdp.trainer.strategy)  # the Trainer itself needs GPUs for FSDP
    assert isinstance(strategy, FSDPStrategy) and strategy.kwargs["auto_wrap_policy"].keywords == {
        "min_num_params": 1_000_000}
    launcher = compose_cfg("hydra/launcher=slurm", return_hydra_config=True).hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher") and launcher.tasks_per_node == 1


# -- checkpoint files ------------------------------------------------------------------------------------------

def test_checkpoint_of_random_bytes_is_called_truncated_or_corrupted(tmp_path):
    p = tmp_path / "noise.ckpt"
    p.write_bytes(torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
                  .numpy().tobytes())
    with pytest.raises(zoo.CheckpointError, match=r"cannot read checkpoint .*\(truncated or corrupted: ") as err:
        zoo.load_model(p)
    assert "pickled Python objects" not in str(err.value)  # noise is not an unsafe checkpoint


def test_training_side_shares_the_library_checkpoint_error():
    from tasks.checkpoints import CheckpointError as TasksCheckpointError

    assert TasksCheckpointError is zoo.CheckpointError is CheckpointError


def test_save_model_is_atomic(tmp_path, monkeypatch):
    """A full disk in the middle of a save leaves the previous file intact and loadable, and no temporary."""
    path = zoo.save_model(zoo.create_model("mlp", width=8, depth=1), tmp_path / "mlp.pt", name="mlp",
                          kwargs={"width": 8, "depth": 1})
    before = path.read_bytes()

    def disk_full(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04half a model")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError, match="No space left"):
        zoo.save_model(zoo.create_model("mlp", width=16, depth=1), path, name="mlp", kwargs={"width": 16, "depth": 1})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["mlp.pt"]
    assert zoo.load_model(path).zoo_kwargs == {"width": 8, "depth": 1}


def test_checkpoint_layouts_all_load(tmp_path):
    """The task's self-describing "zoo" entry (any prefix), save_model's file, and legacy run checkpoints."""
    model = zoo.create_model("lenet5", num_classes=7).eval()
    state = model.state_dict()
    x = torch.randn(2, 1, 28, 28)
    layouts = {
        "described": {"zoo": {"model": "lenet5", "kwargs": {"num_classes": 7}, "prefix": "net."},
                      "state_dict": {**{f"net.{k}": v for k, v in state.items()}, "loss.weight": torch.ones(7)}},
        "save_model": {"format": "dnn-zoo/1", "model": "lenet5", "kwargs": {"num_classes": 7}, "state_dict": state},
        "legacy": {"hyper_parameters": {"model": {"name": "lenet5", "num_classes": 7}},
                   "state_dict": {f"model.{k}": v for k, v in state.items()}},
    }
    for name, ckpt in layouts.items():
        torch.save(ckpt, tmp_path / f"{name}.ckpt")
        loaded = zoo.load_model(tmp_path / f"{name}.ckpt")
        assert (loaded.zoo_name, loaded.zoo_kwargs) == ("lenet5", {"num_classes": 7}), name
        torch.testing.assert_close(loaded(x), model(x), msg=name)
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "bare.ckpt")
    with pytest.raises(zoo.CheckpointError, match="no description of the model .*'zoo' entry"):
        zoo.load_model(tmp_path / "bare.ckpt")


def test_an_output_folder_that_cannot_be_created_is_one_line_not_a_traceback(tmp_path, capsys):
    from tasks.cli_checks import check_output_dirs

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(SystemExit) as exit_info:
        check_output_dirs([f"hydra.run.dir={blocker}/run"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"hydra.run.dir={blocker}/run: cannot write the run's output folder there" in err
    assert "Traceback" not in err
    check_output_dirs([f"hydra.run.dir={tmp_path}/ok/run", "hydra.run.dir=outputs/${now:%H}"])  # fine: no exit
    assert (tmp_path / "ok" / "run").is_dir()


def test_a_full_disk_while_saving_a_checkpoint_ends_with_one_line(compose_cfg, tmp_path, monkeypatch, capsys):
    from tasks.cli_checks import report_user_error
    from tasks.runner import run
    from zoo.io import WriteError

    cfg = compose_cfg(*fast_overrides("model=mlp", "model.width=8", "model.depth=1", "logger=none"))

    def disk_full(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(SystemExit) as exit_info, report_user_error():
        run(cfg)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    first = next(line for line in err.splitlines() if line.startswith("error:"))
    assert "cannot write" in first and "No space left on device" in first and "hydra.run.dir" in first
    assert "Traceback" not in err
    assert not list(tmp_path.rglob("*.tmp"))  # no half-written temporary left behind
    assert issubclass(WriteError, OSError) and issubclass(WriteError, zoo.ZooError)
