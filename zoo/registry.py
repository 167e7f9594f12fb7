"""The model registry: one name, one builder, one set of metadata.

Like torchvision's registry it is strict (a duplicate name is an error); like timm's, a builder's
function name is its registry name, and wildcards select families of models.
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from zoo.vocab import MODALITIES, check_task_kinds

if TYPE_CHECKING:  # annotations only: `import zoo` does not import torch (the families do, on first use)
    from torch import nn

__all__ = [
    "ModelInfo",
    "UnknownModelError",
    "ZooError",
    "count_params",
    "create_model",
    "example_inputs",
    "list_models",
    "model_info",
    "register_model",
]



class ZooError(Exception):
    """An error caused by what the user asked for; its message says what to do next."""


class UnknownModelError(ZooError, KeyError):
    """A registry name that is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about a model without building it."""

    name: str
    builder: Callable[..., nn.Module] = field(repr=False)
    family: str
    modalities: tuple[str, ...]  # the first is the primary one; sequence models serve text and time series
    tasks: tuple[str, ...]
    input_shape: tuple[int, ...] | None = None  # default input of one sample, e.g. (1, 28, 28)
    paper: str = ""
    example: Callable[[int], tuple[Any, ...]] | None = field(default=None, repr=False)

    @property
    def modality(self) -> str:
        """The primary modality (the one its default input has)."""
        return self.modalities[0]

    @property
    def defaults(self) -> dict[str, Any]:
        """The builder's keyword arguments and their defaults."""
        sig = inspect.signature(self.builder)
        return {
            k: p.default
            for k, p in sig.parameters.items()
            if p.default is not inspect.Parameter.empty and p.kind is not inspect.Parameter.VAR_KEYWORD
        }


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(
    *,
    family: str,
    modality: str | Iterable[str],
    tasks: Iterable[str],
    input_shape: tuple[int, ...] | None = None,
    paper: str = "",
    name: str | None = None,
    example: Callable[[int], tuple[Any, ...]] | None = None,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register a builder under its function name (or ``name``). A duplicate name is an error.

    ``modality`` is one modality or several (the first is the primary one, that of the default input).
    """
    modalities = (modality,) if isinstance(modality, str) else tuple(modality)
    bad = [m for m in modalities if m not in MODALITIES]
    if bad or not modalities:
        raise ValueError(f"modality must be one or more of {', '.join(MODALITIES)}, got {modality!r}")
    task_kinds = check_task_kinds(tuple(tasks), owner="register_model")

    def decorator(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        key = name or fn.__name__
        if key in _REGISTRY:
            other = _REGISTRY[key].builder
            raise ValueError(
                f"model name {key!r} is already registered by {other.__module__}.{other.__qualname__}; "
                "registry names must be unique"
            )
        _REGISTRY[key] = ModelInfo(
            name=key,
            builder=fn,
            family=family,
            modalities=modalities,
            tasks=task_kinds,
            input_shape=input_shape,
            paper=paper,
            example=example,
        )
        return fn

    return decorator


def _ensure_models_imported() -> None:
    # Importing the families registers them; done lazily so `import zoo.registry` stays cheap.
    import zoo.models  # noqa: F401


def model_info(name: str) -> ModelInfo:
    """Metadata of a registered model; an unknown name raises :class:`UnknownModelError`."""
    _ensure_models_imported()
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, _REGISTRY, n=5, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise UnknownModelError(
            f"unknown model {name!r}.{hint} Run `zoo list` (or zoo.list_models()) to see all "
            f"{len(_REGISTRY)} registered models."
        ) from None


def create_model(name: str, *, pretrained: Any = None, **kwargs: Any) -> nn.Module:
    """Build a registered model: ``create_model("resnet20", num_classes=10)``.

    ``pretrained="mnist"`` loads the weights shipped with the package for that model trained on that data
    (``zoo list --pretrained``; in eval mode, with its preprocessing). Names prefixed ``timm/`` or
    ``torchvision/`` build those libraries' architectures (randomly initialised unless ``pretrained=True``)
    with the same ``num_classes``/``in_chans`` vocabulary.
    """
    if "/" in name:
        from zoo.external import create_external_model

        return create_external_model(name, **kwargs, **({} if pretrained is None else {"pretrained": pretrained}))
    if pretrained:
        from zoo.pretrained import load_shipped

        return load_shipped(name, str(pretrained), **kwargs)
    info = model_info(name)
    try:
        inspect.signature(info.builder).bind(**kwargs)
    except TypeError as e:
        accepted = ", ".join(info.defaults) or "none"
        raise ZooError(f"model {name!r} does not take these arguments ({e}). It accepts: {accepted}.") from None
    model = info.builder(**kwargs)
    if "image" in info.modalities and "in_chans" in info.defaults:  # a wrong image shape fails at the entrance
        from zoo.inputs import guard_image_input

        settings = {**info.defaults, **kwargs}
        sized = settings.get("in_features") is None  # an MLP given in_features takes rows, not images
        guard_image_input(model, name, in_chans=settings["in_chans"],
                          img_size=settings.get("img_size") if sized else None)
    return model


def list_models(
    pattern: str | Iterable[str] = "*",
    *,
    family: str | None = None,
    modality: str | None = None,
    task: str | None = None,
) -> list[str]:
    """Sorted registry names matching a wildcard pattern (or several) and optional filters."""
    _ensure_models_imported()
    patterns = [pattern] if isinstance(pattern, str) else list(pattern)
    return sorted(
        name
        for name, info in _REGISTRY.items()
        if any(fnmatch.fnmatchcase(name, p) for p in patterns)
        and (family is None or info.family == family)
        and (modality is None or modality in info.modalities)
        and (task is None or task in info.tasks)
    )


def example_inputs(name: str, batch: int = 2) -> tuple[Any, ...]:
    """Positional inputs for a forward pass of ``create_model(name)`` with default arguments.

    Models with an unusual forward register an ``example`` function; otherwise the default input
    follows from ``input_shape`` and the modality (random token ids below 100 for text).
    """
    import torch

    info = model_info(name)
    if info.example is not None:
        return tuple(info.example(batch))
    if info.input_shape is None:
        raise ValueError(f"model {name!r} declares neither input_shape nor example")
    if info.modality == "text":
        return (torch.randint(0, 100, (batch, *info.input_shape)),)
    return (torch.randn(batch, *info.input_shape),)


def count_params(model: nn.Module | str, *, trainable_only: bool = False, **kwargs: Any) -> int:
    """Parameter count of a model, or of a registry name built with ``kwargs``."""
    if isinstance(model, str):
        model = create_model(model, **kwargs)
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
