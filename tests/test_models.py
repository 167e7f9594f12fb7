"""Registry-wide model checks: every registered model builds, runs on its default input and trains.

New families are picked up from the registry without editing this file.
"""

import pytest
import torch

import zoo
from zoo.registry import example_inputs

ALL = zoo.list_models()
IMAGE_CLASSIFIERS = zoo.list_models(modality="image", task="classify")


def _tensors(out):
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _tensors(o)]
    if isinstance(out, dict):
        return [t for o in out.values() for t in _tensors(o)]
    return []


@pytest.mark.parametrize("name", ALL)
def test_builds_runs_and_every_parameter_gets_a_gradient(name):
    torch.manual_seed(0)
    model = zoo.create_model(name)
    model.train()
    outs = _tensors(model(*example_inputs(name)))
    assert outs, f"{name} returned no tensors"
    assert all(torch.isfinite(o).all() for o in outs if o.is_floating_point())
    sum(o.float().sum() for o in outs if o.is_floating_point()).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"{name}: no gradient for {missing[:5]}"


@pytest.mark.parametrize("name", IMAGE_CLASSIFIERS)
@pytest.mark.parametrize("in_chans,img_size", [(1, 28), (3, 32)])
def test_image_classifiers_take_1_and_3_channels(name, in_chans, img_size):
    kwargs = {"num_classes": 7, "in_chans": in_chans}
    if "img_size" in zoo.model_info(name).defaults:
        kwargs["img_size"] = img_size
    model = zoo.create_model(name, **kwargs).eval()
    with torch.no_grad():
        out = model(torch.randn(3, in_chans, img_size, img_size))
    assert out.shape == (3, 7)


@pytest.mark.parametrize("name", IMAGE_CLASSIFIERS)
def test_default_input_gives_num_classes_logits(name):
    info = zoo.model_info(name)
    out = zoo.create_model(name).eval()(torch.randn(2, *info.input_shape))
    assert out.shape == (2, info.defaults["num_classes"])


def test_lenet5_follows_the_1998_layout():
    m = zoo.create_model("lenet5", classic=True)
    convs = [mod for mod in m.modules() if isinstance(mod, torch.nn.Conv2d)]
    linears = [mod for mod in m.modules() if isinstance(mod, torch.nn.Linear)]
    assert [c.kernel_size for c in convs] == [(5, 5), (5, 5)] and [c.out_channels for c in convs] == [6, 16]
    assert [mod.out_features for mod in linears] == [120, 84, 10]
    assert any(isinstance(mod, torch.nn.AvgPool2d) for mod in m.modules())
    assert any(isinstance(mod, torch.nn.Tanh) for mod in m.modules())


def test_cifar_resnet_depths_follow_6n_plus_2():
    for name, n in (("resnet20", 3), ("resnet32", 5), ("resnet56", 9)):
        convs = [mod for mod in zoo.create_model(name).modules() if isinstance(mod, torch.nn.Conv2d)]
        assert len(convs) + 1 == 6 * n + 2  # convs + the linear head; option-A shortcuts add no conv


def test_mlp_depth_width_activation():
    m = zoo.create_model("mlp", depth=3, width=64, act="tanh", norm=True, dropout=0.1)
    linears = [mod for mod in m.modules() if isinstance(mod, torch.nn.Linear)]
    assert [mod.out_features for mod in linears] == [64, 64, 64, 10]
    assert sum(isinstance(mod, torch.nn.Tanh) for mod in m.modules()) == 3
    with pytest.raises(ValueError, match="unknown activation"):
        zoo.create_model("mlp", act="swishy")


def test_lightweight_cnn_is_lighter_than_resnet():
    assert zoo.count_params("mobilenet_tiny") < zoo.count_params("resnet20") < zoo.count_params("resnet18")
