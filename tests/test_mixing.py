"""MixUp and CutMix as data.augment options: they mix training batches only, their soft labels say how much of
each image a mixed image holds, the classification loss takes them, and a run with them trains."""

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from tasks.classification import ClassificationTask
from tasks.data import DataError, VisionDataModule
from tasks.runner import run
from tests.conftest import fast_overrides


def _distinct_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Ten flat grey images, image i of value 20 * i, labelled i: a pixel's value tells which image it came from."""
    x = (torch.arange(10, dtype=torch.uint8) * 20).view(10, 1, 1, 1).expand(10, 1, 28, 28).contiguous()
    return x, torch.arange(10)


def _batch_after_transfer(dm: VisionDataModule, x: torch.Tensor, y: torch.Tensor, *, training: bool):
    dm.trainer = SimpleNamespace(training=training, current_epoch=0)  # what on_after_batch_transfer reads
    return dm.on_after_batch_transfer((x, y), 0)


@pytest.mark.parametrize("augment", ["mixup", "cutmix", "mixup_cutmix"])
def test_mixing_changes_training_batches_only_and_labels_say_how_much_of_each_image(tmp_path, augment):
    dm = VisionDataModule(dataset="mnist", root=str(tmp_path), augment=augment, normalize=False)
    x, y = _distinct_batch()
    plain = x.float() / 255
    for seed in range(3):
        torch.manual_seed(seed)
        mixed, soft = _batch_after_transfer(dm, x, y, training=True)
        assert soft.shape == (10, 10) and soft.dtype == torch.float32
        torch.testing.assert_close(soft.sum(1), torch.ones(10))
        assert not torch.equal(mixed, plain)
        for i in range(10):  # torchvision pairs image i with image i - 1 (the batch rolled by one)
            j = (i - 1) % 10
            own, other = soft[i, y[i]].item(), soft[i, y[j]].item()
            assert own + other == pytest.approx(1.0, abs=1e-6)  # no label but the two images' own
            if augment == "mixup" or augment == "mixup_cutmix" and mixed[i].unique().numel() == 1:
                assert mixed[i].mean().item() == pytest.approx(own * plain[i, 0, 0, 0] + other * plain[j, 0, 0, 0],
                                                             abs=1e-5)
            else:  # CutMix: the label weight is the pasted box's share of the pixels
                assert (mixed[i] == plain[j]).float().mean().item() == pytest.approx(other, abs=1e-6)
    # validation and test batches (trainer not training) are neither augmented nor mixed: hard labels stay
    x_eval, y_eval = _batch_after_transfer(dm, x, y, training=False)
    assert torch.equal(x_eval, plain) and torch.equal(y_eval, y) and y_eval.dtype == torch.int64


def test_mixing_follows_the_per_image_augmentation_and_bad_names_are_refused(tmp_path):
    dm = VisionDataModule(dataset="cifar10", root=str(tmp_path), augment="crop_flip+cutmix", cutmix_alpha=0.5)
    assert (dm.image_augment, type(dm.mixer).__name__, dm.mixer.alpha) == ("crop_flip", "CutMix", 0.5)
    assert dm.num_classes == 10
    for bad in ("crop_flip+mixup+cutmix", "mixup+crop+flip", "crop_flip+mixupp"):
        with pytest.raises(DataError, match="'mixup', 'cutmix' or 'mixup_cutmix'"):
            VisionDataModule(dataset="cifar10", root=str(tmp_path), augment=bad)
    with pytest.raises(DataError, match="must be > 0"):
        VisionDataModule(dataset="cifar10", root=str(tmp_path), augment="mixup", mixup_alpha=0.0)


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")
def test_training_loss_with_soft_labels_is_the_soft_cross_entropy():
    torch.manual_seed(0)
    smoothing = 0.1
    task = ClassificationTask(model={"name": "lenet5", "num_classes": 10, "in_chans": 1}, label_smoothing=smoothing)
    task.eval()  # the same function for every call below
    x = torch.randn(6, 1, 28, 28)
    soft = torch.softmax(torch.randn(6, 10), dim=1)  # any rows summing to 1, as MixUp/CutMix make them
    loss = task.training_step((x, soft), 0)
    target = soft * (1 - smoothing) + smoothing / 10  # label smoothing blends the soft label with the uniform one
    manual = -(target * F.log_softmax(task(x), dim=1)).sum(1).mean()
    torch.testing.assert_close(loss, manual)
    hard = torch.randint(0, 10, (6,))  # one-hot soft labels are the hard labels
    torch.testing.assert_close(task.training_step((x, F.one_hot(hard, 10).float()), 0),
                               task.training_step((x, hard), 0))


def test_a_run_with_crop_and_mixup_trains(compose_cfg, one_thread):
    cfg = compose_cfg(*fast_overrides("data.augment=crop+mixup", "data.batch_size=64", "logger=none",
                                      "trainer.limit_train_batches=4"))
    metrics = run(cfg)
    assert metrics["steps"] == 4 and 0.0 <= metrics["test/acc"] <= 1.0  # evaluation took hard labels
    assert math.isfinite(metrics["val/loss"]) and 0.0 <= metrics["val/acc"] <= 1.0
