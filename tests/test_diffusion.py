"""The DDPM: noise schedules, the forward process, the samplers, the U-Net, its task, EMA sampling, generation."""

import math

import lightning as L
import pytest
import torch
from PIL import Image

import zoo
from tasks.ema import EMA
from tasks.generate import main as generate_main
from tasks.runner import run
from tasks.validate import validate_config
from tests.conftest import fast_overrides
from zoo.layers.position import sinusoidal_table, timestep_embedding
from zoo.models.diffusion import beta_schedule

TINY = {"width": 8, "channel_mults": (1, 2), "num_heads": 2, "num_steps": 10, "sample_steps": 5}


def _tiny(**kwargs):
    torch.manual_seed(0)
    model = zoo.create_model("ddpm", **{**TINY, **kwargs}).eval()
    with torch.no_grad():  # off the zero initialisation, which predicts eps = 0 whatever the input
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


# -- schedules and the forward process -------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_schedules_decrease_alpha_bar_from_about_1_to_about_0(kind):
    betas = beta_schedule(kind, 1000)
    alpha_bar = torch.cumprod(1 - betas, 0)
    assert betas.shape == (1000,) and (betas > 0).all() and (betas <= 0.999).all()
    assert (alpha_bar[1:] < alpha_bar[:-1]).all()  # strictly more noise at every step
    assert alpha_bar[0] > 0.999 and alpha_bar[-1] < 1e-4
    if kind == "linear":  # Ho et al.: 1e-4 -> 0.02
        assert betas[0].item() == pytest.approx(1e-4) and betas[-1].item() == pytest.approx(0.02)
    else:  # Nichol & Dhariwal: alpha_bar follows cos^2, so it is about 1/2 at t = T/2
        assert alpha_bar[499].item() == pytest.approx(math.cos((0.5 + 0.008) / 1.008 * math.pi / 2) ** 2 /
                                                      math.cos(0.008 / 1.008 * math.pi / 2) ** 2, rel=1e-3)
    # a shorter chain ends about as noisy (linear: betas rescaled by 1000 / T)
    assert torch.cumprod(1 - beta_schedule(kind, 100), 0)[-1] < 1e-3
    with pytest.raises(ValueError, match="linear, cosine"):
        beta_schedule("quadratic", 10)


def test_forward_process_has_the_closed_form_mean_and_variance():
    model = zoo.create_model("ddpm", **TINY)
    g = torch.Generator().manual_seed(0)
    x0 = torch.full((4000, 1, 2, 2), 0.6)
    for t in (0, 4, 9):
        ab = model.alpha_bar[t].item()
        xt = model.q_sample(x0, torch.full((4000,), t), torch.randn(x0.shape, generator=g))
        assert xt.mean().item() == pytest.approx(math.sqrt(ab) * 0.6, abs=0.02)
        assert xt.std().item() == pytest.approx(math.sqrt(1 - ab), rel=0.03, abs=1e-3)


def test_timestep_embedding_uses_the_transformers_sinusoids():
    t = torch.tensor([0, 3, 17])
    emb = timestep_embedding(t, 8)
    table = sinusoidal_table(20, 8)  # sin at even columns, cos at odd
    assert emb.shape == (3, 8)
    torch.testing.assert_close(emb[:, :4], table[t][:, 0::2])
    torch.testing.assert_close(emb[:, 4:], table[t][:, 1::2])


# -- the network and the samplers ------------------------------------------------------------------------------

@pytest.mark.parametrize("in_chans,img_size", [(1, 28), (3, 32)])
def test_unet_keeps_the_image_shape_and_is_conditioned_on_t(in_chans, img_size):
    model = _tiny(in_chans=in_chans, img_size=img_size)
    x = torch.randn(3, in_chans, img_size, img_size)
    with torch.no_grad():
        a = model(x, torch.tensor([1, 1, 1]))
        b = model(x, torch.tensor([8, 8, 8]))
    assert a.shape == x.shape
    assert (a - b).abs().mean() > 1e-3  # the same images at another noise level: another prediction


def test_untrained_network_predicts_zero_noise():
    model = zoo.create_model("ddpm", **TINY)  # zero-initialised head: the loss starts at E[eps^2] = 1
    assert model(torch.randn(2, 1, 28, 28), torch.tensor([0, 9])).abs().max() == 0


def test_ddim_with_all_steps_and_eta_1_is_the_ancestral_sampler():
    model = _tiny()
    ancestral = model.sample(4, sampler="ddpm", generator=torch.Generator().manual_seed(3))
    ddim = model.sample(4, sampler="ddim", steps=10, eta=1.0, generator=torch.Generator().manual_seed(3))
    assert ancestral.shape == (4, 1, 28, 28) and 0 <= ancestral.min() and ancestral.max() <= 1
    torch.testing.assert_close(ddim, ancestral, atol=1e-4, rtol=0)  # the same chain, two formulas
    fewer = model.sample(4, steps=4, eta=1.0, generator=torch.Generator().manual_seed(3))
    assert fewer.shape == ancestral.shape and (fewer - ancestral).abs().max() > 1e-3


def test_deterministic_ddim_depends_on_the_seed_only():
    model = _tiny()
    a = model.sample(3, steps=4, eta=0.0, generator=torch.Generator().manual_seed(1))
    b = model.sample(3, steps=4, eta=0.0, generator=torch.Generator().manual_seed(1))
    c = model.sample(3, steps=4, eta=0.0, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and (a - c).abs().max() > 1e-3
    noise = torch.randn(3, 1, 28, 28)
    traj = model.sample_trajectory(3, noise=noise, steps=4, frames=4)  # eta=0: x_T fixes the sample
    assert traj.frames.shape == (3, 4, 1, 28, 28)
    torch.testing.assert_close(traj.frames[:, 0], ((noise + 1) / 2).clamp(0, 1))  # the first frame is x_T
    torch.testing.assert_close(traj.frames[:, -1], traj.images)  # the last is x_0
    torch.testing.assert_close(model.sample_trajectory(3, noise=noise, steps=4, frames=0).images, traj.images)


def test_bad_sampler_settings_say_what_is_allowed():
    model = zoo.create_model("ddpm", **TINY)
    with pytest.raises(zoo.ZooError, match="between 1 and num_steps=10"):
        model.sample(1, steps=50)
    with pytest.raises(zoo.ZooError, match="all 10 steps"):
        model.sample(1, sampler="ddpm", steps=5)
    with pytest.raises(zoo.ZooError, match="ddim, ddpm"):
        model.sample(1, sampler="euler")
    with pytest.raises(zoo.ZooError, match="linear, cosine"):
        zoo.create_model("ddpm", schedule="sigmoid")


# -- EMA: the generative tasks sample with the averaged weights ------------------------------------------------

class _Recorder(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Linear(2, 1)
        self.seen: list[torch.Tensor] = []

    def training_step(self, batch, batch_idx):
        return self.net(batch[0]).square().mean()

    def validation_step(self, batch, batch_idx):
        pass

    def on_validation_epoch_end(self):  # where the generative tasks draw their samples
        self.seen.append(self.net.weight.detach().clone())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.5)


def test_the_task_epoch_end_hook_sees_the_averaged_weights(tmp_path):
    torch.manual_seed(0)
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(32, 2)), batch_size=4)
    module, ema = _Recorder(), EMA(decay=0.9, short_warmup=False)
    trainer = L.Trainer(max_epochs=1, callbacks=[ema], logger=False, enable_progress_bar=False, num_sanity_val_steps=0,
                        enable_model_summary=False, enable_checkpointing=False, default_root_dir=tmp_path)
    trainer.fit(module, train_dataloaders=data, val_dataloaders=data)
    averaged = ema._average_model.module.net.weight  # after training: the model holds the average too
    torch.testing.assert_close(module.seen[-1], averaged)
    torch.testing.assert_close(module.net.weight, averaged)


# -- the task, configs and generation on real data -------------------------------------------------------------

def test_ddpm_brings_its_task_with_the_ema_and_goal_diffusion_selects_it(compose_cfg):
    cfg = compose_cfg("model=ddpm", "data=mnist")
    assert cfg.task._target_ == "tasks.DiffusionTask" and cfg.monitor.metric == "val/loss"
    assert cfg.callbacks.ema._target_ == "tasks.ema.EMA"
    validate_config(cfg)  # the 60-minute recipe (conf/recipe/own/ddpm_mnist.yaml) sets task keys of DiffusionTask
    assert (cfg.trainer.max_epochs, cfg.data.batch_size, cfg.task.fd_every_n_epochs) == (10, 128, 1)
    assert (cfg.trainer.precision, cfg.task.channels_last) == ("bf16-auto", False)  # bf16 where native, in NCHW: the faster layout there
    auto = compose_cfg("data=mnist", "model=auto", "goal.task=generate", "goal.generator=diffusion")
    assert (auto.model.name, auto.task._target_) == ("ddpm", "tasks.DiffusionTask")


def test_fast_dev_run_samples_little(compose_cfg, tmp_path):
    tiny = [f"model.{k}={list(v) if isinstance(v, tuple) else v}" for k, v in TINY.items()]
    cfg = compose_cfg("model=ddpm", "data=mnist", "task=diffusion", "trainer.fast_dev_run=true", *tiny,
                      "callbacks.progress_bar=null", "data.eval_batch_size=100", "task.test_steps=10", "task.val_steps=10")
    assert cfg.task.fd_samples == 5000  # the default: 100 samples of 5 steps (SMOKE_*) under fast_dev_run
    metrics = run(cfg)
    assert math.isfinite(metrics["test/fd"]) and math.isfinite(metrics["test/loss"])
    assert (tmp_path / "images" / "trajectory-test.png").is_file()


def test_a_short_run_logs_losses_fd_and_pictures_and_generate_samples_its_checkpoint(compose_cfg, tmp_path):
    tiny = [f"model.{k}={list(v) if isinstance(v, tuple) else v}" for k, v in TINY.items()]
    cfg = compose_cfg(*fast_overrides("model=ddpm", "data=mnist", "task=diffusion", *tiny, "data.batch_size=32",
                                      "data.eval_batch_size=100",
                                      "task.fd_samples=100", "task.val_fd_samples=100", "task.val_steps=3",
                                      "task.test_steps=3", "task.num_images=16", "task.trajectory_rows=4",
                                      "task.trajectory_frames=5", "logger=csv"))
    metrics = run(cfg)
    assert all(math.isfinite(metrics[k]) for k in ("test/loss", "test/fd", "test/fd_real")), metrics
    assert metrics["test/fd"] > 10 * metrics["test/fd_real"] > 0  # 3 steps of training: far from the data
    images = tmp_path / "images"
    for name in ("samples-epoch000", "samples-test", "trajectory-epoch000", "trajectory-test"):
        assert (images / f"{name}.png").is_file(), name
    assert Image.open(images / "trajectory-test.png").size == (5 * 30 + 2, 4 * 30 + 2)  # 5 frames x 4 rows
    logged = (tmp_path / "csv" / "metrics.csv").read_text()
    assert "val/fd" in logged and "val/loss" in logged  # the last epoch scores its samples

    ckpt = next((tmp_path / "checkpoints").glob("best-*.ckpt"))
    grid = tmp_path / "samples.png"
    generate_main([str(ckpt), "--num", "6", "--nrow", "3", "--steps", "2", "--eta", "1", "--out", str(grid)])
    assert Image.open(grid).size == (3 * 30 + 2, 2 * 30 + 2)
    generate_main([str(ckpt), "--num", "2", "--sampler", "ddpm", "--out", str(tmp_path / "ancestral.png")])
    with pytest.raises(SystemExit):  # more DDIM steps than the chain has
        generate_main([str(ckpt), "--num", "2", "--steps", "11", "--out", str(tmp_path / "x.png")])


def test_sampler_options_on_a_one_pass_generator_are_refused(tmp_path, capsys):
    model = zoo.create_model("vae", kind="mlp", hidden=16, latent_dim=4)
    ckpt = tmp_path / "vae.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                "hyper_parameters": {"model": {"name": "vae", "kind": "mlp", "hidden": 16, "latent_dim": 4}}}, ckpt)
    with pytest.raises(SystemExit) as exit_:
        generate_main([str(ckpt), "--steps", "20", "--out", str(tmp_path / "x.png")])
    assert exit_.value.code == 2
    assert "--steps: model 'vae' samples in one pass" in capsys.readouterr().err
    generate_main([str(ckpt), "--num", "2", "--out", str(tmp_path / "vae.png")])  # without the options it samples
    assert (tmp_path / "vae.png").is_file()


@pytest.mark.parametrize("precision, dtype", [("bf16-mixed", torch.bfloat16), ("32-true", torch.float32)])
def test_epoch_end_sampling_runs_in_the_trainers_precision(precision, dtype):
    # Lightning autocasts only its step hooks; the Fréchet distance and the grids sample at epoch end.
    from tasks.generative.diffusion import DiffusionTask

    task = DiffusionTask(model={"name": "ddpm", **TINY}, val_steps=2, test_steps=2)
    task.trainer = L.Trainer(accelerator="cpu", precision=precision, logger=False, enable_progress_bar=False)
    conv = next(m for m in task.model.modules() if isinstance(m, torch.nn.Conv2d))
    seen = []
    conv.register_forward_hook(lambda mod, inp, out: seen.append(out.dtype))
    samples = list(task._samples(3))
    assert seen and set(seen) == {dtype}
    assert samples[0].shape == (3, 1, 28, 28) and samples[0].dtype == torch.float32
    assert not torch.is_autocast_enabled("cpu")  # left before the samples are handed on
