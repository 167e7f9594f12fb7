"""The generative family: the VAE's ELBO, denoising, GAN steps, the Fréchet distance, pictures and generation."""

import math

import lightning as L
import pytest
import torch
from PIL import Image

import zoo
from tasks import GANTask, ReconstructionTask, VAETask
from tasks.data import TensorBatchLoader
from tasks.frechet import feature_stats, frechet_distance, load_feature_extractor
from tasks.generate import main as generate_main
from tasks.generative import gaussian_kl
from tasks.runner import run
from tests.conftest import fast_overrides
from zoo.layers import PixelNoise
from zoo.models.autoencoder import AutoencoderOutput

MNIST_PIXELS = 28 * 28


# -- VAE ---------------------------------------------------------------------------------------------------

def test_gaussian_kl_is_zero_at_the_prior_and_matches_torch_distributions():
    zeros = torch.zeros(3, 8)
    assert torch.equal(gaussian_kl(zeros, zeros), torch.zeros(3))  # posterior == prior: exactly 0
    mu, logvar = torch.randn(3, 8), torch.randn(3, 8)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros(8), torch.ones(8))
    expected = torch.distributions.kl_divergence(q, p).sum(-1)
    torch.testing.assert_close(gaussian_kl(mu, logvar), expected)


def _vae_task(**kwargs):
    return VAETask(model={"name": "vae", "width": 8, "hidden": 32, "latent_dim": 4, **kwargs}, fd_samples=0)


def test_vae_kl_is_zero_when_the_posterior_equals_the_prior_and_nelbo_is_in_nats_per_image():
    task = _vae_task()
    head = task.model.encoder[-1]  # the Linear producing (mu, logvar)
    torch.nn.init.zeros_(head.weight), torch.nn.init.zeros_(head.bias)  # q(z|x) = N(0, I) for every x
    x = task.binarize(torch.rand(5, 1, 28, 28))
    terms = task.elbo(x)
    assert torch.equal(terms.kl, torch.zeros(5))
    torch.testing.assert_close(terms.nelbo, terms.recon + terms.kl)

    out = task.model.decoder[-1]  # the last transposed conv: zero it and every pixel has p = 1/2
    torch.nn.init.zeros_(out.weight), torch.nn.init.zeros_(out.bias)
    terms = task.elbo(x)
    # a summed Bernoulli log-likelihood: ln 2 nats for each of the 784 pixels of each image
    torch.testing.assert_close(terms.nelbo, torch.full((5,), MNIST_PIXELS * math.log(2)))


def test_vae_nelbo_is_recon_plus_kl_at_one_posterior_sample():
    task = _vae_task(kind="mlp")
    x = task.binarize(torch.rand(4, 1, 28, 28))
    terms = task.elbo(x, generator=torch.Generator().manual_seed(3))
    mu, logvar = task.model.encode(x)
    z = task.model.reparameterize(mu, logvar, generator=torch.Generator().manual_seed(3))
    log_px = torch.distributions.Bernoulli(logits=task.model.decode(z)).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(terms.recon, -log_px)
    torch.testing.assert_close(terms.nelbo, terms.recon + terms.kl)
    assert (terms.kl > 0).all()


def test_vae_forward_is_deterministic_in_eval_mode_and_samples_in_training():
    model = zoo.create_model("vae", width=8, hidden=32)
    x = torch.rand(2, 1, 28, 28)
    model.eval()
    torch.testing.assert_close(model(x).logits, model(x).logits, rtol=0, atol=0)
    model.train()
    assert not torch.equal(model(x).logits, model(x).logits)


def test_stochastic_binarisation_gives_binary_pixels_with_the_grey_level_as_probability():
    task = _vae_task()
    x = torch.full((200, 1, 28, 28), 0.3)
    b = task.binarize(x, generator=torch.Generator().manual_seed(0))
    assert set(b.unique().tolist()) == {0.0, 1.0}
    assert abs(b.mean().item() - 0.3) < 0.01
    assert torch.equal(b, task.binarize(x, generator=torch.Generator().manual_seed(0)))  # seeded: reproducible


# -- denoising autoencoder -----------------------------------------------------------------------------------

def _identity(task):
    task.model.forward = lambda x: AutoencoderOutput(x, x.flatten(1))  # reconstructs its input exactly
    return task


def test_denoising_task_corrupts_the_input_in_training_and_targets_the_clean_image():
    x = torch.full((16, 1, 28, 28), 0.5)
    dae = _identity(ReconstructionTask(model={"name": "denoising_autoencoder", "noise": "gaussian",
                                              "noise_level": 0.1}))
    # identity on the corrupted input: the loss is the noise's variance, 0.1^2 (no clipping this far from 0/1)
    assert abs(dae.training_step((x, None), 0).item() - 0.01) < 0.001
    ae = _identity(ReconstructionTask(model={"name": "autoencoder"}))
    assert ae.training_step((x, None), 0).item() == 0.0  # a plain autoencoder is not fed noise


def test_evaluation_corruption_is_the_same_every_epoch():
    task = ReconstructionTask(model={"name": "denoising_autoencoder", "kind": "mlp", "hidden": 16})
    x = torch.rand(4, 1, 28, 28)
    first, _ = task.reconstruct(x, generator=task.eval_generator(x.device, 7))
    again, _ = task.reconstruct(x, generator=task.eval_generator(x.device, 7))
    other, _ = task.reconstruct(x, generator=task.eval_generator(x.device, 8))
    assert torch.equal(first, again) and not torch.equal(first, other)


@pytest.mark.parametrize("kind", ["masking", "salt_pepper"])
def test_pixel_noise_hits_the_requested_fraction(kind):
    x = torch.full((100, 1, 28, 28), 0.5)
    y = PixelNoise(kind, 0.25)(x, generator=torch.Generator().manual_seed(0))
    hit = y != 0.5
    assert abs(hit.float().mean().item() - 0.25) < 0.01
    assert set(y[hit].unique().tolist()) == ({0.0} if kind == "masking" else {0.0, 1.0})


def test_pixel_noise_rejects_bad_settings():
    with pytest.raises(ValueError, match="unknown noise 'speckle'"):
        PixelNoise("speckle", 0.1)
    with pytest.raises(ValueError, match="probability in"):
        PixelNoise("masking", 1.5)


# -- GAN -----------------------------------------------------------------------------------------------------

def test_one_manual_gan_step_changes_both_networks():
    task = GANTask(model={"name": "dcgan", "g_width": 8, "d_width": 8}, fd_samples=0)
    before = {k: v.detach().clone() for k, v in task.model.named_parameters()}
    noise = task.fixed_noise.clone()
    trainer = L.Trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=0, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    images = torch.rand(16, 1, 28, 28)
    trainer.fit(task, train_dataloaders=TensorBatchLoader(images, torch.zeros(16), batch_size=16))
    assert trainer.global_step == 2  # one discriminator step and one generator step
    unchanged = [k for k, v in task.model.named_parameters() if torch.equal(v, before[k])]
    assert not unchanged, f"parameters not updated by the step: {unchanged}"
    assert torch.equal(task.fixed_noise, noise) and "fixed_noise" in task.state_dict()


def test_gan_task_refuses_a_model_without_two_players():
    with pytest.raises(zoo.ZooError, match="task=gan trains models with a generator and a discriminator"):
        GANTask(model={"name": "vae"})


# -- Fréchet distance ----------------------------------------------------------------------------------------

def test_frechet_distance_is_zero_for_a_set_with_itself_and_grows_with_a_shift():
    torch.manual_seed(0)
    f = torch.randn(500, 16) @ torch.randn(16, 16)  # correlated features
    s = feature_stats(f)
    assert abs(frechet_distance(*s, *s)) < 1e-6
    shifts = [frechet_distance(*s, *feature_stats(f + d)) for d in (0.1, 0.5, 1.0)]
    assert shifts == sorted(shifts) and shifts[0] > 0
    # equal covariances: only the means differ, d^2 = |delta mu|^2 = 16 * 1.0^2
    assert abs(shifts[-1] - 16.0) < 1e-6


def test_frechet_distance_matches_the_closed_form_for_diagonal_gaussians():
    a, b = torch.rand(6, dtype=torch.float64) + 0.1, torch.rand(6, dtype=torch.float64) + 0.1
    mu = torch.zeros(6, dtype=torch.float64)
    expected = ((a.sqrt() - b.sqrt()) ** 2).sum().item()  # tr(A + B - 2 (AB)^(1/2)) for diagonal A, B
    assert abs(frechet_distance(mu, torch.diag(a), mu, torch.diag(b)) - expected) < 1e-9


def test_feature_extractor_is_trained_once_and_cached_by_its_data(tmp_path, monkeypatch):
    from tasks import frechet
    from tasks.data.vision import DATASETS

    spec = DATASETS["mnist"]
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (256, 1, 28, 28), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (256,), generator=g)
    first = load_feature_extractor("mnist", images, labels, spec=spec, cache_dir=str(tmp_path))
    cached = list((tmp_path / "frechet").glob("mnist-lenet5-*.pt"))
    assert len(cached) == 1

    def no_training(*args, **kwargs):
        raise AssertionError("retrained although the extractor is cached")

    monkeypatch.setattr(frechet, "train_feature_extractor", no_training)
    again = load_feature_extractor("mnist", images, labels, spec=spec, cache_dir=str(tmp_path))
    x = torch.rand(3, 1, 28, 28)
    assert first(x).shape == (3, 84)  # lenet5's penultimate layer
    torch.testing.assert_close(first(x), again(x))
    with pytest.raises(AssertionError, match="retrained"):  # other data: another key, so it must train
        load_feature_extractor("mnist", images.flip(0), labels, spec=spec, cache_dir=str(tmp_path))


# -- configs, runs, pictures, generation ---------------------------------------------------------------------

@pytest.mark.parametrize("model,target", [("autoencoder", "ReconstructionTask"),
                                          ("denoising_autoencoder", "ReconstructionTask"),
                                          ("vae", "VAETask"), ("gan", "GANTask"), ("dcgan", "GANTask")])
def test_a_generative_model_brings_its_task(model, target, compose_cfg):
    cfg = compose_cfg(f"model={model}", "data=mnist")
    assert cfg.task._target_ == f"tasks.{target}"
    assert cfg.monitor.metric == {"ReconstructionTask": "val/mse", "VAETask": "val/nelbo", "GANTask": "val/fd"}[target]


@pytest.mark.parametrize("model,task,keys,pictures", [
    ("vae", "vae", ["test/nelbo", "test/recon", "test/kl", "test/fd", "test/fd_real"],
     ["samples", "recon", "interpolation"]),
    ("denoising_autoencoder", "reconstruction", ["test/mse", "test/noisy_mse"], ["recon"]),
    ("dcgan", "gan", ["test/fd", "test/fd_real", "test/d_real"], ["samples"]),
])
def test_fast_dev_run_logs_the_metrics_and_saves_pictures(model, task, keys, pictures, compose_cfg, tmp_path):
    cfg = compose_cfg(f"model={model}", "data=mnist", f"task={task}", "trainer.fast_dev_run=true",
                      "callbacks.progress_bar=null", *(["task.fd_samples=200"] if task != "reconstruction" else []))
    metrics = run(cfg)
    assert all(math.isfinite(metrics[k]) for k in keys), metrics
    for name in pictures:
        for tag in ("epoch000", "test"):
            assert (tmp_path / "images" / f"{name}-{tag}.png").is_file(), f"{name}-{tag}.png"
    if "test/fd" in metrics:  # an untrained generator is far from the real-vs-real floor
        assert metrics["test/fd"] > 10 * metrics["test/fd_real"] > 0
    if task == "vae":
        assert abs(metrics["test/nelbo"] - metrics["test/recon"] - metrics["test/kl"]) < 1e-2
    if task == "reconstruction":
        assert metrics["test/noisy_mse"] > 0


def test_generate_writes_samples_from_a_checkpoint_and_images_reach_tensorboard(compose_cfg, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run(compose_cfg(*fast_overrides("model=vae", "data=mnist", "task=vae", "task.fd_samples=0",
                                    "model.width=8", "model.hidden=64", "logger=tensorboard")))
    ckpt = next((tmp_path / "checkpoints").glob("best-*.ckpt"))
    grid = tmp_path / "samples.png"
    generate_main([str(ckpt), "--num", "10", "--nrow", "5", "--out", str(grid)])
    assert Image.open(grid).size == (5 * 30 + 2, 2 * 30 + 2)  # 28-pixel images, 2-pixel padding
    generate_main([str(ckpt), "--num", "3", "--out", str(tmp_path / "each")])
    assert sorted(p.name for p in (tmp_path / "each").iterdir()) == [f"sample_000{i}.png" for i in range(3)]

    events = EventAccumulator(str(tmp_path / "tensorboard")).Reload()
    assert {"val/samples", "val/recon", "val/interpolation", "test/samples"} <= set(events.Tags()["images"])


def test_generate_refuses_a_model_without_a_prior(tmp_path, capsys):
    model = zoo.create_model("autoencoder", kind="mlp", hidden=16)
    ckpt = tmp_path / "ae.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                "hyper_parameters": {"model": {"name": "autoencoder", "kind": "mlp", "hidden": 16}}}, ckpt)
    with pytest.raises(SystemExit) as exit_:
        generate_main([str(ckpt), "--out", str(tmp_path / "x.png")])
    assert exit_.value.code == 2
    assert "no prior to sample from" in capsys.readouterr().err


def test_gan_resumes_exactly_from_its_checkpoint(compose_cfg, tmp_path):
    common = ("model=gan", "data=mnist", "task=gan", "task.fd_samples=0", "monitor.metric=null",
              "model.hidden=64", "data.batch_size=32", "test=false", "logger=none")

    def final_state(folder):
        return torch.load(folder / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]

    run(compose_cfg(*fast_overrides(*common, "trainer.max_epochs=2", f"paths.output_dir={tmp_path / 'whole'}")))
    run(compose_cfg(*fast_overrides(*common, "trainer.max_epochs=1", f"paths.output_dir={tmp_path / 'cut'}")))
    run(compose_cfg(*fast_overrides(*common, "trainer.max_epochs=2", f"paths.output_dir={tmp_path / 'cut'}",
                                    "ckpt_path=last")))
    whole, resumed = final_state(tmp_path / "whole"), final_state(tmp_path / "cut")
    assert whole.keys() == resumed.keys()
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
