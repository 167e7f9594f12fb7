"""The time-to-accuracy recipe (experiment=cifar10_fast, airbench94): each ingredient does what it claims.

Whitening whitens, Dirac convolutions start as the identity, flips alternate by epoch, test-time
augmentation averages the views it names, the EMA's averaged weights are what validation, checkpoints and
the test see, and the whole experiment composes and runs.
"""

from __future__ import annotations

import json

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import zoo
from tasks.data.augment import alternating_flip_translate, tta_logits
from tasks.ema import EMA
from tasks.optim import build_optimizer, build_scheduler
from tasks.runner import run
from zoo.layers.whitening import PatchWhitening
from zoo.models.airbench import dirac_conv

pytestmark = pytest.mark.usefixtures("one_thread")  # small models: one thread is faster


def _correlated_images(n: int = 64, size: int = 12) -> torch.Tensor:
    """Images whose neighbouring pixels and channels are strongly correlated (blurred, mixed noise)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, size + 2, size + 2, generator=g)
    x = F.avg_pool2d(x, 3, stride=1)  # (n, 3, size, size): spatial correlation
    mix = torch.tensor([[1.0, 0.8, 0.5], [0.0, 0.6, 0.4], [0.0, 0.0, 0.3]])
    return torch.einsum("dc,nchw->ndhw", mix, x)  # channel correlation


def _patch_cov(out: torch.Tensor) -> torch.Tensor:
    flat = out.permute(1, 0, 2, 3).flatten(1)  # (B, C, H, W) -> (C, B*H*W)
    return flat @ flat.T / flat.shape[1]


def test_patch_whitening_makes_the_patch_covariance_the_identity():
    x = _correlated_images()
    layer = PatchWhitening(3, 2, eps=1e-8)
    raw = _patch_cov(F.unfold(x, 2).transpose(1, 2).reshape(-1, 12, 1, 1))
    assert (raw - torch.eye(12)).abs().max() > 0.3  # the patches really are correlated
    layer.init_from_data(x)
    with torch.no_grad():
        out = F.conv2d(x, layer.weight)  # (B, 24, H - 1, W - 1), no bias
    torch.testing.assert_close(_patch_cov(out[:, :12]), torch.eye(12), atol=2e-3, rtol=0)
    torch.testing.assert_close(out[:, 12:], -out[:, :12])  # the negated copies
    assert not layer.weight.requires_grad and layer.bias.requires_grad


def test_airbench_init_from_data_sets_its_whitening_layer():
    model = zoo.create_model("airbench94")
    x = _correlated_images(16, 32)
    before = model.whiten.weight.clone()
    model.init_from_data(x)
    assert not torch.equal(before, model.whiten.weight)
    with torch.no_grad():
        cov = _patch_cov(F.conv2d(x, model.whiten.weight[:12]))
    d = cov.diagonal()  # lambda / (lambda + eps): 1 for strong components, eps = 5e-4 shrinks the weakest
    assert (cov - torch.diag(d)).abs().max() < 1e-4  # decorrelated
    assert d[0] > 0.99 and (d[:-1] >= d[1:] - 1e-4).all()  # strongest component first, as airbench orders them


def test_dirac_conv_is_the_identity_on_its_first_channels():
    x = torch.randn(2, 8, 5, 5)
    with torch.no_grad():
        torch.testing.assert_close(dirac_conv(8, 16)(x)[:, :8], x)
    group = zoo.create_model("airbench94").groups[1]
    y = torch.randn(2, 256, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(group.conv2(y), y)  # square convs start as the identity


def test_airbench94_has_airbench_shapes_and_cost():
    from torch.utils.flop_counter import FlopCounterMode

    model = zoo.create_model("airbench94").eval()
    assert model.whiten.out_channels == 24 and model.num_features == 256
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        out = model(torch.randn(1, 3, 32, 32))
    assert out.shape == (1, 10)
    assert 0.2e9 < counter.get_total_flops() < 0.3e9  # ~0.24 GFLOPs per image, as airbench's network


def test_alternating_flip_mirrors_each_image_on_every_other_epoch():
    x = torch.randint(0, 256, (256, 3, 6, 6), dtype=torch.uint8)
    views = [alternating_flip_translate(x, epoch=e, padding=0) for e in range(4)]
    flipped = [(v == x.flip(-1)).flatten(1).all(1) for v in views]
    for v, f in zip(views, flipped, strict=True):
        assert torch.equal(v[~f], x[~f])  # every image is either itself or its mirror
    assert torch.equal(flipped[1], ~flipped[0]) and torch.equal(flipped[2], flipped[0])
    assert torch.equal(flipped[3], flipped[1])
    assert 0.35 < flipped[0].float().mean() < 0.65  # the fixed coin splits the images about evenly


def test_translation_is_a_crop_of_the_reflect_padded_image():
    x = torch.randint(0, 256, (32, 3, 8, 8), dtype=torch.uint8)
    out = alternating_flip_translate(x, epoch=0, padding=2)
    padded = F.pad(x.float(), (2, 2, 2, 2), mode="reflect")  # (B, C, 12, 12)
    for i in range(len(x)):
        crops = [padded[i, :, dy : dy + 8, dx : dx + 8] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(out[i].float(), c) or torch.equal(out[i].float(), c.flip(-1)) for c in crops)


def test_vision_datamodule_passes_the_epoch_to_the_alternating_flip(data_dir):
    from types import SimpleNamespace

    from tasks.data.vision import VisionDataModule

    dm = VisionDataModule(dataset="cifar10", root=str(data_dir), augment="flip_translate", normalize=False)
    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    outs = []
    for epoch in (0, 1):
        dm.trainer = SimpleNamespace(current_epoch=epoch)
        torch.manual_seed(0)  # the same translations both epochs: only the flips differ
        outs.append(dm.transform(x, train=True))
    torch.testing.assert_close(outs[1], outs[0].flip(-1))


def test_tta_averages_the_views_it_names():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(5))
    x = torch.randn(6, 3, 8, 8)
    with torch.no_grad():
        net(x)
        assert torch.equal(tta_logits(net, x, level=0), net(x))
        mirror = 0.5 * (net(x) + net(x.flip(-1)))
        torch.testing.assert_close(tta_logits(net, x, level=1), mirror)
        padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
        shifts = [padded[..., :8, :8], padded[..., 2:, 2:]]
        views = [0.5 * (net(s) + net(s.flip(-1))) for s in shifts]
        out = tta_logits(net, x, level=2)
        assert out.shape == (6, 5)
        torch.testing.assert_close(out, 0.5 * mirror + 0.25 * (views[0] + views[1]))
    with pytest.raises(ValueError, match="tta level"):
        tta_logits(net, x, level=3)


def test_decoupled_sgd_and_triangular_schedule_follow_airbench():
    model = zoo.create_model("airbench94")
    opt = build_optimizer(model, name="sgd", lr=11.5, momentum=0.85, weight_decay=0.0153, decoupled=True,
                          batch_size=1024, norm_bias_lr_scale=64.0)
    others, biases = opt.param_groups
    assert others["nesterov"] and biases["nesterov"]
    assert others["lr"] == pytest.approx(11.5 / (1 + 1 / 0.15))  # 1.5 for the mean loss of 1024 images
    assert biases["lr"] == pytest.approx(64 * others["lr"])
    for g in (others, biases):  # the same decay per step: airbench's 0.0153 / (1 + 1 / 0.15)
        assert g["lr"] * g["weight_decay"] == pytest.approx(0.0153 / (1 + 1 / 0.15))
    norms = {id(m.bias) for m in model.modules() if isinstance(m, nn.BatchNorm2d)}
    assert {id(p) for p in biases["params"]} == norms
    sched = build_scheduler(opt, total_steps=100, name="linear", warmup_steps=0.23, warmup_start_ratio=0.2,
                            min_lr_ratio=0.07)
    factors = [sched.lr_lambdas[0](s) for s in range(100)]
    assert factors[0] == pytest.approx(0.2 + 0.8 / 23) and max(factors) == pytest.approx(1.0)
    assert factors.index(max(factors)) == 22 and factors[-1] == pytest.approx(0.07, abs=0.02)


class _Regression(L.LightningModule):
    """A linear model that records its weights after every step and what the test step sees."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Linear(4, 1)
        self.trained: list[torch.Tensor] = []
        self.tested: list[torch.Tensor] = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.mse_loss(self.net(x), y)

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        self.trained.append(self.net.weight.detach().clone())

    def test_step(self, batch, batch_idx) -> None:
        self.tested.append(self.net.weight.detach().clone())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.2)


def _loader() -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(48, 4, generator=g)
    return DataLoader(TensorDataset(x, x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])), batch_size=8)


def _trainer(tmp_path, ema: EMA) -> tuple[L.Trainer, L.pytorch.callbacks.ModelCheckpoint]:
    ckpt = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path, monitor=None)
    return L.Trainer(max_epochs=1, callbacks=[ema, ckpt], logger=False, enable_progress_bar=False,
                     enable_model_summary=False, default_root_dir=tmp_path), ckpt


def test_ema_weights_are_the_ones_checkpointed_and_tested(tmp_path):
    torch.manual_seed(0)
    module, decay = _Regression(), 0.5
    trainer, ckpt = _trainer(tmp_path, EMA(decay=decay, short_warmup=False))
    trainer.fit(module, train_dataloaders=_loader())
    expected = module.trained[0]
    for w in module.trained[1:]:
        expected = decay * expected + (1 - decay) * w
    torch.testing.assert_close(module.net.weight, expected)  # training ends on the average
    saved = torch.load(ckpt.best_model_path, weights_only=False)
    torch.testing.assert_close(saved["state_dict"]["net.weight"], expected)
    torch.testing.assert_close(saved["current_model_state"]["net.weight"], module.trained[-1])
    with torch.no_grad():
        module.net.weight.zero_()
    trainer.test(module, dataloaders=_loader(), ckpt_path=ckpt.best_model_path, verbose=False)
    torch.testing.assert_close(module.tested[0], expected)  # the same trainer (as tasks/runner.py) tests the average


def test_the_default_decay_is_capped_early_so_the_average_is_not_mostly_the_initial_weights():
    ema = EMA(decay=0.999)
    assert ema.decay_at(0, 1000) == pytest.approx(0.1) and ema.decay_at(90, 1000) == pytest.approx(0.91)
    assert ema.decay_at(100_000, 200_000) == pytest.approx(0.999)
    assert EMA(decay=0.999, short_warmup=False).decay_at(0, 1000) == 0.999


def test_lookahead_continues_from_the_average_and_the_decay_warms_up(tmp_path):
    torch.manual_seed(0)
    module = _Regression()
    ema = EMA(decay=0.9, update_every_n_steps=2, warmup_power=3.0, lookahead=True, short_warmup=False)
    assert ema.decay_at(5, 10) == pytest.approx(0.9 * 0.5**3) and ema.decay_at(10, 10) == pytest.approx(0.9)
    trainer, _ = _trainer(tmp_path, ema)
    trainer.fit(module, train_dataloaders=_loader())
    averaged = ema._average_model.module.net.weight
    torch.testing.assert_close(module.trained[-2], averaged)  # step 5 (index 4) updated: the weights are the average
    assert not torch.equal(module.trained[-1], module.trained[-2])


def test_cifar10_fast_composes_the_recipe(compose_cfg):
    cfg = compose_cfg("experiment=cifar10_fast")
    assert cfg.model.name == "airbench94" and cfg.data.val_size == 0 and cfg.data.augment == "flip_translate"
    assert cfg.callbacks.ema._target_ == "tasks.ema.EMA" and cfg.callbacks.ema.lookahead
    assert cfg.task.tta == 2 and cfg.task.optimizer.batch_size == cfg.data.batch_size == 1024
    assert cfg.monitor.metric is None and cfg.trainer.precision == "bf16-auto"


def test_cifar10_fast_runs_and_tests_the_averaged_checkpoint(compose_cfg, tmp_path):
    cfg = compose_cfg("experiment=cifar10_fast", "data.batch_size=64", "data.eval_batch_size=100",
                      "trainer.max_epochs=1", "trainer.limit_train_batches=2",
                      "trainer.limit_test_batches=1", "trainer.log_every_n_steps=1", "callbacks.progress_bar=null")
    metrics = run(cfg)
    assert metrics["model"] == "airbench94" and metrics["steps"] == 2 and 0 <= metrics["test/acc"] <= 1
    saved = torch.load(metrics["best_checkpoint"], weights_only=False)
    assert "current_model_state" in saved  # written by the EMA: state_dict holds the average
    whiten = saved["state_dict"]["model.whiten.weight"]
    assert not torch.equal(whiten[:12].flatten(1), torch.eye(12) / (1 + 5e-4) ** 0.5)  # computed from CIFAR
    assert json.loads((tmp_path / "metrics.json").read_text())["test/acc"] == metrics["test/acc"]


@pytest.mark.filterwarnings("ignore:Total length of `TensorBatchLoader`")  # fast_dev_run forces the empty val split on
def test_cifar10_fast_dev_run(compose_cfg):
    cfg = compose_cfg("experiment=cifar10_fast", "trainer.fast_dev_run=true", "data.batch_size=64",
                      "data.eval_batch_size=100", "callbacks.progress_bar=null")
    metrics = run(cfg)
    assert metrics["steps"] == 1 and 0 <= metrics["test/acc"] <= 1
