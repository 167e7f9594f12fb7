"""The model surface users know from timm, on every classifier the zoo registers (a new one cannot skip it):
``forward_features`` / ``forward_head(pre_logits=)`` / ``get_classifier`` / ``reset_classifier`` / ``num_features``,
and torchvision's FX feature extractor for multi-scale maps."""

import inspect

import pytest
import torch
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor

import zoo
from zoo.layers import SequenceFeatures

CLASSIFIERS = [n for n in zoo.list_models(task="classify") if "/" not in n]


pytestmark = pytest.mark.usefixtures("one_thread")  # small models: one thread is faster


def _classifier(name: str) -> nn.Module:
    # multi-task builders (rnn, lstm, gru, transformer_encoder) pick their head with ``task``
    kwargs = {"task": "classify"} if "task" in zoo.model_info(name).defaults else {}
    torch.manual_seed(0)
    return zoo.create_model(name, **kwargs).eval()


def _input_cases(model: nn.Module, name: str) -> list[tuple]:
    torch.manual_seed(1)
    inputs = zoo.example_inputs(name, batch=2)
    cases = [inputs]
    if "padding_mask" in inspect.signature(model.forward).parameters:  # a sequence classifier: pad row 0
        mask = torch.zeros(inputs[0].shape[:2], dtype=torch.bool)
        mask[0, inputs[0].shape[1] // 2:] = True
        cases.append((inputs[0], mask))
    return cases


def test_every_registered_classifier_is_checked():
    assert {"lenet5", "resnet20", "vit_tiny", "airbench94", "mlp", "lstm", "transformer_encoder"} <= set(CLASSIFIERS)


@pytest.mark.parametrize("name", CLASSIFIERS)
@torch.no_grad()
def test_forward_is_forward_head_of_forward_features(name):
    model = _classifier(name)
    head = model.get_classifier()
    assert isinstance(head, nn.Linear) and head.in_features == model.num_features
    assert head.out_features == model.num_classes
    seen = []
    hook = head.register_forward_hook(lambda mod, args, out: seen.append(args[0]))
    for inputs in _input_cases(model, name):
        seen.clear()
        logits = model(*inputs)
        assert logits.shape == (2, model.num_classes)
        feats = model.forward_features(*inputs)
        if len(inputs) > 1:  # the mask travels with the features, so forward_head pools as forward does
            assert isinstance(feats, SequenceFeatures) and feats.padding_mask is inputs[1]
        torch.testing.assert_close(model.forward_head(feats), logits, rtol=1e-5, atol=1e-6)
        pooled = model.forward_head(feats, pre_logits=True)
        assert pooled.shape == (2, model.num_features)
        # get_classifier() is the module forward runs on exactly the pre-logits features
        torch.testing.assert_close(seen[0], pooled, rtol=1e-5, atol=1e-6)
    hook.remove()


@pytest.mark.parametrize("name", CLASSIFIERS)
@torch.no_grad()
def test_reset_classifier_replaces_the_head_and_keeps_parameter_names(name):
    model = _classifier(name)
    inputs = zoo.example_inputs(name, batch=2)
    keys, old = set(model.state_dict()), model.get_classifier()
    model.reset_classifier(5)
    new = model.get_classifier()
    assert new is not old and isinstance(new, nn.Linear) and (new.in_features, new.out_features) == (
        model.num_features, 5)
    assert set(model.state_dict()) == keys  # a checkpoint of the fine-tuned model loads by the same names
    assert {id(p) for p in new.parameters()} <= {id(p) for p in model.parameters()}  # the optimizer sees it
    assert model(*inputs).shape == (2, 5) and model.num_classes == 5
    model.reset_classifier(0)  # a feature extractor: forward returns the pooled features
    assert isinstance(model.get_classifier(), nn.Identity) and model.num_classes == 0
    feats = model.forward_features(*inputs)
    torch.testing.assert_close(model(*inputs), model.forward_head(feats, pre_logits=True))


@torch.no_grad()
def test_resnet20_forward_features_is_the_unpooled_map_and_fx_extracts_every_stage():
    model = _classifier("resnet20")
    x = torch.randn(2, 3, 32, 32)
    body = create_feature_extractor(model, {"stages.0": "s1", "stages.1": "s2", "stages.2": "s3"})
    maps = body(x)
    assert {k: tuple(v.shape) for k, v in maps.items()} == {
        "s1": (2, 16, 32, 32), "s2": (2, 32, 16, 16), "s3": (2, 64, 8, 8)}
    torch.testing.assert_close(maps["s3"], model.forward_features(x))


@torch.no_grad()
def test_lenet5_fx_extracts_both_pooled_maps():
    model = _classifier("lenet5")
    x = torch.randn(2, 1, 28, 28)
    maps = create_feature_extractor(model, {"features.2": "s2", "features.5": "s4"})(x)
    assert {k: tuple(v.shape) for k, v in maps.items()} == {"s2": (2, 6, 14, 14), "s4": (2, 16, 5, 5)}
    torch.testing.assert_close(maps["s4"], model.forward_features(x))


def test_rnn_pool_last_needs_the_sequence_features_not_bare_outputs():
    model = zoo.create_model("gru", task="classify", pool="last").eval()
    feats = model.forward_features(torch.randint(1, 100, (2, 7)))
    with pytest.raises(ValueError, match="SequenceFeatures"):
        model.forward_head(feats.features)
