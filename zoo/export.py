"""Exporting zoo models: ONNX (run it with onnxruntime) and ``torch.export`` programs.

>>> model = zoo.create_model("resnet20").eval()
>>> zoo.export.to_onnx(model, "resnet20.onnx")             # the registry's example input, any batch size
>>> program = zoo.export.to_torch_export(model)            # torch.export.ExportedProgram
>>> zoo.export.max_onnx_error(model, "resnet20.onnx")      # largest |onnxruntime - eager| on fresh inputs

The batch dimension stays dynamic; every other size is fixed to the example's (sequence models are
exported for the example's length). Models are exported in eval mode (dropout off, batch-norm statistics
frozen), where every zoo model's forward is deterministic.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_flatten

from zoo.registry import ZooError, example_inputs

__all__ = ["eager_outputs", "load_program", "max_onnx_error", "onnx_inputs", "run_onnx", "to_onnx",
           "to_torch_export"]


def _inputs(model: nn.Module, inputs: Sequence[Any] | None, batch: int = 2) -> tuple[Any, ...]:
    if inputs is not None:
        return tuple(inputs)
    name = getattr(model, "zoo_name", None)
    if name is None:
        raise ZooError("pass the model's example inputs (inputs=(x,)): this model has no zoo_name to look "
                       "them up by (models from zoo.load_model have one).")
    return example_inputs(name, batch=batch)


def _dynamic_batch(inputs: tuple[Any, ...]) -> tuple[Any, ...]:
    """``dynamic_shapes`` marking dim 0 of every tensor input as one shared batch size."""
    batch = torch.export.Dim("batch")
    return tuple({0: batch} if isinstance(x, torch.Tensor) and x.dim() else None for x in inputs)


def _register_output_types() -> None:
    """Make the zoo's NamedTuple outputs serialisable in exported programs (saved by their dotted name).

    PyTorch flattens NamedTuples without registration but can only save and load them registered, under a
    name; this uses ``torch.utils._pytree._register_namedtuple``, the API the error message names.
    """
    import sys

    from torch.utils import _pytree

    import zoo.models  # noqa: F401  (the families define the output types)

    for module_name, module in list(sys.modules.items()):
        if not module_name.startswith("zoo.") or module is None:
            continue
        for obj in list(vars(module).values()):
            if (isinstance(obj, type) and issubclass(obj, tuple) and hasattr(obj, "_fields")
                    and obj.__module__ == module_name and obj not in _pytree.SUPPORTED_SERIALIZED_TYPES):
                _pytree._register_namedtuple(obj, serialized_type_name=f"{obj.__module__}.{obj.__qualname__}")


def to_torch_export(model: nn.Module, inputs: Sequence[Any] | None = None, *, path: str | Path | None = None,
                    dynamic_batch: bool = True) -> torch.export.ExportedProgram:
    """``torch.export.export`` of the model in eval mode; saved with ``torch.export.save`` when ``path`` is given
    (load it with :func:`load_program`)."""
    args = _inputs(model, inputs)
    model = model.eval()
    program = torch.export.export(model, args, dynamic_shapes=_dynamic_batch(args) if dynamic_batch else None)
    if path is not None:
        _register_output_types()
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        torch.export.save(program, str(path))
    return program


def load_program(path: str | Path) -> torch.export.ExportedProgram:
    """``torch.export.load`` of a file :func:`to_torch_export` saved; ``.module()`` runs it."""
    _register_output_types()
    return torch.export.load(str(path))


def to_onnx(model: nn.Module, path: str | Path, inputs: Sequence[Any] | None = None, *,
            dynamic_batch: bool = True, opset: int | None = None) -> Path:
    """Export to an ONNX file with the dynamo-based exporter (``torch.onnx.export(dynamo=True)``).

    Weights are stored inside the file (models above 2 GB would need ONNX's external data).
    """
    args = _inputs(model, inputs)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter warns about every op it decomposes
        torch.onnx.export(model, args, str(path), dynamo=True, external_data=False, opset_version=opset,
                          dynamic_shapes=_dynamic_batch(args) if dynamic_batch else None, verbose=False)
    return path


def onnx_inputs(inputs: Sequence[Any]) -> list[Any]:
    """The ONNX graph's inputs for positional ``inputs``: the tensors as numpy arrays (None args vanish)."""
    return [t.detach().cpu().numpy() for t in tree_flatten(tuple(inputs))[0] if isinstance(t, torch.Tensor)]


def run_onnx(path: str | Path, inputs: Sequence[Any]) -> list[Any]:
    """Run an exported file with onnxruntime on the CPU; returns the flattened outputs as numpy arrays."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    arrays = onnx_inputs(inputs)
    if len(names) != len(arrays):
        raise ZooError(f"{path} takes {len(names)} inputs ({', '.join(names)}), got {len(arrays)} tensors")
    return session.run(None, dict(zip(names, arrays, strict=True)))


def eager_outputs(model: nn.Module, inputs: Sequence[Any]) -> list[torch.Tensor]:
    """The model's outputs in eval mode, flattened as the exporters flatten them (NamedTuples in field order)."""
    with torch.no_grad():
        out = model.eval()(*inputs)
    return [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]


def max_onnx_error(model: nn.Module, path: str | Path, inputs: Sequence[Any] | None = None) -> float:
    """Largest absolute difference between onnxruntime on ``path`` and the eager model, on ``inputs``
    (default: a fresh example input of batch 3, so that the dynamic batch size is exercised too)."""
    args = _inputs(model, inputs, batch=3)
    expected = eager_outputs(model, args)
    got = run_onnx(path, args)
    if len(got) != len(expected):
        raise ZooError(f"{path} returns {len(got)} outputs, the model {len(expected)}")
    worst = 0.0
    for e, g in zip(expected, got, strict=True):
        g = torch.from_numpy(g)
        if g.shape != e.shape:
            raise ZooError(f"{path} returns shape {tuple(g.shape)} where the model returns {tuple(e.shape)}")
        if e.is_floating_point():
            worst = max(worst, (g.float() - e.float()).abs().max().item() if e.numel() else 0.0)
        else:
            worst = max(worst, float((g != e).any()))  # integer outputs (token ids) must match exactly
    return worst
