"""Vision Transformers, batched RandAugment, and the timm/ and torchvision/ registry passthrough."""

import urllib.error

import pytest
import torch

import zoo
from tasks.data.augment import rand_augment
from tasks.optim import build_optimizer
from tasks.runner import run
from tests.conftest import fast_overrides
from zoo.models.vit import VisionTransformer

TINY = dict(embed_dim=32, depth=2, num_heads=2, mlp_ratio=2.0)  # test-sized; the builders' other defaults


def _vit(**kwargs) -> VisionTransformer:
    return zoo.create_model("vit_tiny", **{**TINY, **kwargs})


@pytest.mark.parametrize("in_chans,img_size,patch_size,tokens", [(3, 32, 4, 64), (1, 28, 4, 49), (1, 28, 7, 16)])
@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_patch_tokens_and_pooling(in_chans, img_size, patch_size, tokens, pool):
    model = _vit(in_chans=in_chans, img_size=img_size, patch_size=patch_size, pool=pool, num_classes=7).eval()
    x = torch.randn(3, in_chans, img_size, img_size)
    feats = model.forward_features(x)
    assert feats.shape == (3, tokens + (pool == "cls"), 32)  # (img/patch)^2 patches, +1 with a class token
    assert model(x).shape == (3, 7)
    assert (model.cls_token is not None) == (pool == "cls")


def test_patch_size_that_does_not_divide_the_image_fails_clearly():
    with pytest.raises(ValueError, match=r"patch_size=5 does not divide img_size=32.*2, 4, 8, 16") as e:
        _vit(img_size=32, patch_size=5)
    assert isinstance(e.value, zoo.ZooError)  # train.py prints it as one line and exits 2
    with pytest.raises(ValueError, match="pool='max'"):
        _vit(pool="max")


def test_sincos_positions_are_fixed_and_learned_ones_train():
    learned, sincos = _vit(pos="learned"), _vit(pos="sincos")
    assert "pos_embed" in dict(learned.named_parameters())
    assert "pos_embed" not in dict(sincos.named_parameters()) and sincos.pos_embed.shape == (1, 64, 32)
    # every patch gets its own position, and the grid is not the 1-D table: rows and columns both vary
    table = sincos.pos_embed[0]
    assert torch.cdist(table, table).add(torch.eye(64)).min() > 0.1
    with pytest.raises(ValueError, match="divisible by 4"):
        _vit(pos="sincos", embed_dim=30, num_heads=2)


def test_drop_path_is_random_in_training_and_off_in_eval():
    torch.manual_seed(0)
    model = _vit(drop_path_rate=0.5, depth=4)
    x = torch.randn(4, 3, 32, 32)
    model.train()
    assert not torch.allclose(model.forward_features(x), model.forward_features(x))
    model.eval()
    with torch.no_grad():
        assert torch.equal(model.forward_features(x), model.forward_features(x))
    # without drop path (and no dropout) training-mode passes agree: the randomness above was drop path
    plain = _vit(drop_path_rate=0.0, depth=4).train()
    assert torch.equal(plain.forward_features(x), plain.forward_features(x))


def test_head_starts_at_zero_and_positions_and_class_token_skip_weight_decay():
    model = _vit()
    assert torch.count_nonzero(model(torch.randn(2, 3, 32, 32))) == 0  # zero head: equal logits at the start
    opt = build_optimizer(model, name="adamw", lr=1e-3, weight_decay=0.05)
    decayed = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    names = {n for n, p in model.named_parameters() if id(p) in decayed}
    assert "pos_embed" not in names and "cls_token" not in names
    assert "head.weight" in names and not any(n.endswith((".bias", "norm.weight")) for n in names)


def test_rand_augment_draws_per_group_and_keeps_uint8():
    torch.manual_seed(0)
    x = torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8).expand(16, -1, -1, -1).contiguous()
    out = rand_augment(x, num_ops=2, magnitude=9, group_size=1)
    assert out.shape == x.shape and out.dtype == torch.uint8
    distinct = {tuple(o.flatten()[:512].tolist()) for o in out}
    assert len(distinct) > 4  # one image, 16 copies: each group of one drew its own ops
    grouped = rand_augment(x, group_size=16)
    assert all(torch.equal(grouped[0], g) for g in grouped)  # one group shares one draw
    with pytest.raises(TypeError, match="uint8"):
        rand_augment(x.float())


def test_datamodule_augment_options_crop_never_mirrors_and_eval_is_untouched(tmp_path):
    from tasks.data import DataError, VisionDataModule

    x = torch.zeros(64, 1, 28, 28, dtype=torch.uint8)
    x[:, 0, 5, 3] = 255  # one bright pixel near the left edge
    cols = {}
    for augment in ("crop", "crop_flip", "randaugment"):
        dm = VisionDataModule(dataset="mnist", root=str(tmp_path), augment=augment, normalize=False)
        torch.manual_seed(0)
        out = dm.transform(x, train=True)
        cols[augment] = out[:, 0].amax(dim=1).argmax(dim=1)  # (B,) column of the brightest pixel
        assert torch.equal(dm.transform(x, train=False), x.float() / 255)
    assert cols["crop"].max() <= 3 + 4 and len(set(cols["crop"].tolist())) > 3  # shifted by up to 4, never mirrored
    assert cols["crop_flip"].max() >= 28 - 1 - 3 - 4  # about half are mirrored to the right edge
    with pytest.raises(DataError, match="choose null, 'flip', 'crop', 'crop_flip', 'randaugment' or 'flip_translate'"):
        VisionDataModule(dataset="mnist", root=str(tmp_path), augment="autoaugment")


@pytest.mark.parametrize("source", ["timm", "torchvision"])
@pytest.mark.parametrize("in_chans", [1, 3])
def test_external_models_take_num_classes_and_in_chans(source, in_chans):
    model = zoo.create_model(f"{source}/resnet18", num_classes=10, in_chans=in_chans).eval()
    with torch.no_grad():
        assert model(torch.randn(2, in_chans, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("source", ["timm", "torchvision"])
def test_unknown_external_name_lists_close_matches(source):
    with pytest.raises(zoo.UnknownModelError, match=rf"{source}/resnet18"):
        zoo.create_model(f"{source}/resnet19", num_classes=10)
    with pytest.raises(zoo.UnknownModelError, match="timm/<arch>, torchvision/<arch>"):
        zoo.create_model("keras/resnet18")


def test_pretrained_weights_offline_fail_with_what_to_do(monkeypatch):
    import timm.models._builder
    import torchvision.models._api

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline)
    monkeypatch.setattr(timm.models._builder, "load_pretrained", offline)
    for name in ("torchvision/resnet18", "timm/resnet18"):
        with pytest.raises(zoo.ZooError, match="pretrained weights.*pretrained=false"):
            zoo.create_model(name, num_classes=1000, pretrained=True)
    with pytest.raises(zoo.ZooError, match="1000-class"):
        zoo.create_model("torchvision/resnet18", num_classes=10, pretrained=True)


def test_vit_recipe_fast_dev_run(compose_cfg):
    # the whole experiment (RandAugment batches, label smoothing, warmup + cosine) on real CIFAR-10
    cfg = compose_cfg("experiment=vit_cifar10",
                      *fast_overrides("data.batch_size=32", "data.eval_batch_size=100", "model.depth=2"))
    assert (cfg.model.name, cfg.data.augment) == ("vit_tiny", "randaugment")
    metrics = run(cfg)
    assert metrics["model"] == "vit_tiny" and metrics["steps"] == 3 and 0.0 <= metrics["test/acc"] <= 1.0


@pytest.mark.parametrize("config,name,data,in_chans", [("timm", "timm/resnet10t", "cifar10", 3),
                                                         ("torchvision", "torchvision/shufflenet_v2_x0_5", "mnist", 1)])
def test_external_model_trains_through_the_classification_task(compose_cfg, config, name, data, in_chans):
    cfg = compose_cfg(f"model={config}", f"model.name={name}", f"data={data}",
                      *fast_overrides("data.batch_size=16", "data.eval_batch_size=100"))
    metrics = run(cfg)
    assert metrics["model"] == name and metrics["steps"] == 3
    assert metrics["params"] == zoo.count_params(name, num_classes=10, in_chans=in_chans)
