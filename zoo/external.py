"""Registry passthrough: ``timm/<arch>`` and ``torchvision/<arch>`` build those libraries' classifiers.

``zoo.create_model("timm/resnet50", num_classes=10)`` and ``zoo.create_model("torchvision/resnet18",
num_classes=10, in_chans=1)`` take the zoo's ``num_classes``/``in_chans`` vocabulary and build randomly
initialised models, so every timm and torchvision classifier trains through the same classification
task and configs (``python train.py model=timm model.name=timm/resnet10t data=cifar10``). Other keyword
arguments go to the library's builder unchanged (``drop_path_rate=0.1`` for timm, ``dropout=0.2`` for
torchvision's MobileNets).
"""

from __future__ import annotations

import difflib
from typing import Any

from torch import nn

from zoo.registry import UnknownModelError, ZooError

SOURCES = ("timm", "torchvision")


def create_external_model(
    name: str, *, num_classes: int = 1000, in_chans: int = 3, pretrained: bool = False, **kwargs: Any
) -> nn.Module:
    """Build ``timm/<arch>`` or ``torchvision/<arch>``; ``pretrained=True`` needs the weights online or cached."""
    source, _, arch = name.partition("/")
    if source == "timm":
        return _timm(name, arch, num_classes=num_classes, in_chans=in_chans, pretrained=pretrained, **kwargs)
    if source == "torchvision":
        return _torchvision(name, arch, num_classes=num_classes, in_chans=in_chans, pretrained=pretrained,
                            **kwargs)
    raise UnknownModelError(f"unknown model {name!r}: names with a '/' pass through to another library, and "
                            f"{source!r} is not one; use one of {', '.join(s + '/<arch>' for s in SOURCES)} "
                            f"(e.g. timm/resnet18) or a zoo name without '/'")


def _unknown(name: str, arch: str, available: list[str], how_to_list: str) -> UnknownModelError:
    close = difflib.get_close_matches(arch, available, n=5, cutoff=0.6)
    source = name.partition("/")[0]
    hint = f" Did you mean: {', '.join(f'{source}/{c}' for c in close)}?" if close else ""
    return UnknownModelError(f"unknown model {name!r}: {source} has no architecture {arch!r}.{hint} "
                             f"{how_to_list} lists the {len(available)} available.")


def _no_weights(name: str, e: BaseException) -> ZooError:
    return ZooError(f"could not load the pretrained weights of {name} ({type(e).__name__}: {e}). They are "
                    "downloaded on first use, which needs a network connection; offline, put them in the cache "
                    "first (Hugging Face's HF_HOME for timm, TORCH_HOME for torchvision) or train from "
                    "scratch with pretrained=false.")


def _bad_kwargs(name: str, e: TypeError) -> ZooError:
    return ZooError(f"{name} does not take these arguments ({e}); pass only num_classes, in_chans, pretrained "
                    "and keyword arguments its library's builder accepts.")


def _timm(name: str, arch: str, *, num_classes: int, in_chans: int, pretrained: bool, **kwargs: Any) -> nn.Module:
    import timm  # imported here: plain zoo models never need it at import time

    if not timm.is_model(arch):
        raise _unknown(name, arch, timm.list_models(), "timm.list_models()")
    try:
        # timm itself swaps the head for num_classes and rebuilds the stem for in_chans
        return timm.create_model(arch, pretrained=pretrained, num_classes=num_classes, in_chans=in_chans, **kwargs)
    except TypeError as e:
        raise _bad_kwargs(name, e) from None
    except (OSError, RuntimeError) as e:  # hub lookups offline raise OSError subclasses
        if pretrained:
            raise _no_weights(name, e) from e
        raise


def _torchvision(name: str, arch: str, *, num_classes: int, in_chans: int, pretrained: bool,
                 **kwargs: Any) -> nn.Module:
    import torchvision.models as tvm

    classifiers = tvm.list_models(module=tvm)  # the classification models only
    if arch not in classifiers:
        if arch in tvm.list_models():
            raise ZooError(f"{name} is not an image classifier (torchvision registers detection, segmentation "
                           "and video models too); only classifiers pass through, see "
                           "torchvision.models.list_models(module=torchvision.models)")
        raise _unknown(name, arch, classifiers, "torchvision.models.list_models(module=torchvision.models)")
    if arch in ("googlenet", "inception_v3"):
        kwargs.setdefault("aux_logits", False)  # else training returns a tuple of logits, not one tensor
    if pretrained and num_classes != 1000:
        raise ZooError(f"torchvision's pretrained weights for {name} have a 1000-class ImageNet head, and "
                       f"torchvision cannot swap it; use num_classes=1000, or timm/{arch} (timm swaps heads)")
    try:
        if pretrained:
            model = tvm.get_model(arch, weights="DEFAULT", **kwargs)
        else:
            model = tvm.get_model(arch, weights=None, num_classes=num_classes, **kwargs)
    except TypeError as e:
        raise _bad_kwargs(name, e) from None
    except OSError as e:  # urllib errors are OSErrors
        if pretrained:
            raise _no_weights(name, e) from e
        raise
    if in_chans != 3:
        _replace_stem_conv(model, in_chans=in_chans, name=name)
    return model


def _replace_stem_conv(model: nn.Module, *, in_chans: int, name: str) -> None:
    """Rebuild the first RGB convolution for ``in_chans`` channels (randomly initialised, like the rest).

    torchvision's classifiers register their stem convolution first (``conv1``, ``features.0.0``,
    ``conv_proj``, ...); every later layer sees only features, so this is the one layer to change.
    """
    path, stem = next(((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)), ("", None))
    if stem is None or stem.in_channels != 3 or type(stem) is not nn.Conv2d:
        raise ZooError(f"{name}: found no plain 3-channel first convolution to rebuild for in_chans={in_chans}; "
                       "use in_chans=3 (repeat grey images to RGB) or a timm/ architecture")
    parent_path, _, attr = path.rpartition(".")
    new = nn.Conv2d(in_chans, stem.out_channels, stem.kernel_size, stride=stem.stride, padding=stem.padding,
                    dilation=stem.dilation, groups=stem.groups, bias=stem.bias is not None,
                    padding_mode=stem.padding_mode)
    setattr(model.get_submodule(parent_path), attr, new)
