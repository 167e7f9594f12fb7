"""Trained models as folders in the Hugging Face layout: ``model.safetensors`` + ``config.json`` + ``README.md``.

:func:`save_pretrained` writes such a folder; :func:`from_pretrained` rebuilds the model from a folder or a
Hugging Face Hub id. No pickle is involved either way: the weights are safetensors (raw tensors and a JSON
header), everything else is JSON and Markdown, so loading a folder from a stranger runs no code of theirs.

``config.json`` says what the weights are::

    {"format": "dnn-zoo-pretrained/1", "model": "lenet5", "kwargs": {...builder kwargs...},
     "preprocessing": {...the input contract: zoo.preprocess...}, "metrics": {"test/acc": 0.99, ...},
     "recipe": {...the config of the run that trained it...}, "data": {...file checksums...},
     "weights": {"file": "model.safetensors", "sha256": "...", "params": 61706}}

The weights' sha256 is checked at every load, so a truncated download or an edited file is an error, not a
model that silently predicts garbage. Weights shipped inside the package (``zoo/weights/<name>-<data>/``) are
such folders too: ``zoo.create_model("lenet5", pretrained="mnist")`` loads them (:func:`load_shipped`).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path
from typing import Any

from torch import nn

from zoo.checkpoint import RECORD, read_checkpoint
from zoo.io import write_atomic
from zoo.registry import ZooError, create_model, model_info

__all__ = ["FORMAT", "export_run", "from_pretrained", "list_shipped", "load_shipped", "read_weights", "save_pretrained"]

FORMAT = "dnn-zoo-pretrained/1"
WEIGHTS, CONFIG, CARD = "model.safetensors", "config.json", "README.md"
SHIPPED = Path(__file__).parent / "weights"  # package data: <name>-<data>/ folders written by save_pretrained


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _json(obj: Any, what: str) -> str:
    try:
        return json.dumps(obj, indent=2, sort_keys=False) + "\n"
    except TypeError as e:
        raise ZooError(f"save_pretrained: the {what} must be JSON data (numbers, strings, lists, dicts): {e}. "
                       "Pass plain values (e.g. OmegaConf.to_container(cfg, resolve=True)).") from None


def save_pretrained(model: nn.Module, directory: str | Path, *, name: str | None = None,
                    kwargs: dict[str, Any] | None = None, preprocessing: dict[str, Any] | None = None,
                    metrics: dict[str, Any] | None = None, recipe: dict[str, Any] | None = None,
                    data: dict[str, Any] | None = None) -> Path:
    """Write ``model`` as a folder :func:`from_pretrained` (and the Hugging Face Hub) reads; returns the folder.

    ``name``/``kwargs``/``preprocessing`` default to the ``zoo_name``/``zoo_kwargs``/``zoo_preprocessing``
    attributes that :func:`zoo.load_model` and :func:`from_pretrained` set. ``metrics``, ``recipe`` (the run's
    config) and ``data`` (checksums of the data it was trained on) go into ``config.json`` and the model card.
    Each file is written atomically (a kill leaves the previous version, never half a file).
    """
    from safetensors.torch import save_model  # drops tied duplicates (one tensor, two names) and says so

    name = name or getattr(model, "zoo_name", None)
    if name is None:
        raise ZooError("save_pretrained needs the model's registry name: save_pretrained(model, DIR, "
                       "name='resnet20', kwargs={...}) with the kwargs it was built with.")
    kwargs = dict(kwargs if kwargs is not None else getattr(model, "zoo_kwargs", None) or {})
    if preprocessing is None:
        preprocessing = getattr(model, "zoo_preprocessing", None)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="zoo-pretrained-") as tmp:
        staged = Path(tmp) / WEIGHTS
        save_model(model, str(staged), metadata={"format": "pt"})  # "pt": how the Hub's tools tag torch weights
        weights = write_atomic(directory / WEIGHTS, lambda f: f.write(staged.read_bytes()))
    config = {"format": FORMAT, "model": name, "kwargs": kwargs, "preprocessing": preprocessing,
              "metrics": metrics, "recipe": recipe, "data": data,
              "weights": {"file": WEIGHTS, "sha256": _sha256(weights),
                          "params": sum(p.numel() for p in model.parameters())}}
    text = _json(config, "kwargs, preprocessing, metrics, recipe and data")
    write_atomic(directory / CONFIG, lambda f: f.write(text.encode()))
    card = model_card(config)
    write_atomic(directory / CARD, lambda f: f.write(card.encode()))
    return directory


def model_card(config: dict[str, Any]) -> str:
    """The generated ``README.md``: what the model is, how well it did, how to load it."""
    name = config["model"]
    try:
        info = model_info(name)
        paper, family = info.paper or "no paper given", info.family
    except ZooError:  # timm/..., torchvision/...: not in the zoo's registry
        paper, family = "see the library it comes from", name.split("/")[0]
    pre = config.get("preprocessing") or {}
    lines = ["---", "library_name: dnn-zoo", f"tags: [dnn-zoo, {family}, pytorch, safetensors]", "---", "",
             f"# {name}", "", f"- paper: {paper}", f"- family: {family}",
             f"- parameters: {config['weights']['params']:,}",
             f"- arguments: `{json.dumps(config['kwargs'])}`"]
    if (config.get("recipe") or {}).get("command"):
        lines.append(f"- trained with: `{config['recipe']['command']}` (the full config: `recipe` in {CONFIG})")
    if pre:
        shown = {k: v for k, v in pre.items() if k in ("kind", "in_chans", "img_size", "mean", "std", "max_len")}
        lines.append(f"- input: `{json.dumps(shown)}`" + (f", {len(pre['classes'])} classes" if pre.get("classes") else ""))
    metrics = {k: v for k, v in (config.get("metrics") or {}).items()
               if isinstance(v, int | float) and ("/" in k or k in ("epochs", "steps", "train_time_s"))}
    if metrics:
        lines += ["", "## Metrics of the run that trained it", "", "| metric | value |", "| --- | --- |"]
        lines += [f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in metrics.items()]
    if config.get("data"):
        lines += ["", "Data files (sha256): " + ", ".join(f"`{k}` {str(v)[:12]}" for k, v in config["data"].items())]
    lines += ["", "## Use it", "", "```python", "import zoo", "",
              'model = zoo.from_pretrained("THIS_FOLDER_OR_HUB_ID")   # eval mode; no pickle is loaded',
              "model.zoo_preprocessing                               # the input contract (zoo.preprocess)",
              "```", "", "or from the command line: `zoo predict THIS_FOLDER INPUT...`.", "",
              f"Weights: `{WEIGHTS}` (sha256 `{config['weights']['sha256']}`), written by dnn-zoo's "
              "`zoo.save_pretrained`.", ""]
    return "\n".join(lines)


def _resolve(source: str | Path, revision: str | None) -> Path:
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    text = str(source)
    if path.exists() or text.count("/") != 1 or text.startswith((".", "/", "~")):
        what = "a file, not a folder" if path.exists() else "no such folder"
        raise ZooError(f"from_pretrained({text!r}): {what}, and not a Hugging Face Hub id ('owner/name'). Pass a "
                       f"folder written by zoo.save_pretrained or `zoo export-run` (with {CONFIG} and {WEIGHTS}).")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(text, revision=revision, allow_patterns=[CONFIG, WEIGHTS, CARD]))
    except Exception as e:  # offline, unknown repository, gated, ...: many exception types
        why = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise ZooError(f"from_pretrained({text!r}): it is neither a local folder nor reachable on the Hugging Face "
                       f"Hub ({type(e).__name__}: {why}). Check the path, or the Hub id and your connection "
                       "(HF_HUB_OFFLINE=1 uses only what was downloaded before).") from None


def read_config(folder: Path) -> dict[str, Any]:
    """``config.json`` of a pretrained folder, checked: a zoo format, a model name, a weights file that is whole."""
    cfg_path, weights = folder / CONFIG, folder / WEIGHTS
    if not cfg_path.is_file() or not weights.is_file():
        missing = ", ".join(p.name for p in (cfg_path, weights) if not p.is_file())
        raise ZooError(f"{folder} is not a pretrained model folder: {missing} missing. zoo.save_pretrained and "
                       "`zoo export-run RUN_DIR OUT_DIR` write such folders.")
    try:
        config = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ZooError(f"{cfg_path} is not valid JSON ({e}); write the folder again with zoo.save_pretrained.") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT or not isinstance(config.get("model"), str):
        found = config.get("format") if isinstance(config, dict) else type(config).__name__
        raise ZooError(f"{cfg_path} is not a dnn-zoo config (format {found!r}, expected {FORMAT!r} with a "
                       "'model' name); it may belong to another library (e.g. transformers).")
    expected = (config.get("weights") or {}).get("sha256")
    if expected and _sha256(weights) != expected:
        raise ZooError(f"{weights} does not match the sha256 in {cfg_path} (truncated download or edited file); "
                       "download or export it again.")
    return config


def from_pretrained(source: str | Path, *, revision: str | None = None) -> nn.Module:
    """Rebuild a model from a :func:`save_pretrained` folder or a Hugging Face Hub id (``revision``: a branch,
    tag or commit on the Hub).

    Returns the ``nn.Module`` in eval mode on the CPU with ``zoo_name``, ``zoo_kwargs``, ``zoo_preprocessing``
    (the input contract, :mod:`zoo.preprocess`) and ``zoo_config`` (the whole ``config.json``) attributes.
    """
    from safetensors.torch import load_model  # restores tied tensors that save_model wrote once

    folder = _resolve(source, revision)
    config = read_config(folder)
    name, kwargs = config["model"], dict(config.get("kwargs") or {})
    model = create_model(name, **kwargs)
    try:
        load_model(model, str(folder / WEIGHTS), strict=True)
    except RuntimeError as e:
        raise ZooError(f"the weights in {folder} do not fit {name}({kwargs}): {' '.join(str(e).split())[:300]}. "
                       "The registry's model changed since they were saved.") from None
    model.zoo_name, model.zoo_kwargs = name, kwargs
    model.zoo_preprocessing, model.zoo_config = config.get("preprocessing"), config
    return model.eval()


def list_shipped() -> dict[tuple[str, str], Path]:
    """``{(model, data): folder}`` of the weights shipped inside the package (``zoo/weights/<model>-<data>/``)."""
    found = {}
    for folder in sorted(SHIPPED.glob("*/")) if SHIPPED.is_dir() else []:
        if (folder / CONFIG).is_file():
            model, _, data = folder.name.rpartition("-")
            found[(model, data)] = folder
    return found


def load_shipped(name: str, data: str, **kwargs: Any) -> nn.Module:
    """``create_model(name, pretrained=data)``: the package's own trained weights for ``name`` on ``data``."""
    shipped = list_shipped()
    if (name, data) not in shipped:
        have = ", ".join(f"{m} (pretrained={d!r})" for m, d in shipped) or "none"
        raise ZooError(f"no shipped weights for {name!r} trained on {data!r}. Shipped: {have} (`zoo list "
                       "--pretrained`). Other trained models load with zoo.from_pretrained(FOLDER_OR_HUB_ID).")
    model = from_pretrained(shipped[(name, data)])
    differ = {k: v for k, v in kwargs.items() if model.zoo_kwargs.get(k) != v}
    if differ:
        raise ZooError(f"the shipped {name} ({data}) was built with {model.zoo_kwargs}; {differ} differ. Build it "
                       f"with those arguments, or load it and call reset_classifier(n) for another class count.")
    return model


def read_weights(source: str | Path, *, model: str | None = None) -> dict[str, Any]:
    """Any source of trained weights as a checkpoint dictionary (the layout :mod:`zoo.checkpoint` reads, for
    :func:`zoo.checkpoint.load_matching`): a checkpoint file (``.ckpt``, :func:`zoo.save_model`'s ``.pt``), a
    :func:`save_pretrained` folder or Hub id, or ``pretrained:DATA``, the package's own weights of ``model``
    trained on DATA (``zoo list --pretrained``). Folders and shipped weights bring their input contract too.
    """
    text, path = str(source), Path(source).expanduser()
    if path.is_file() or path.suffix in (".ckpt", ".pt", ".pth"):  # a checkpoint, or a missing one: its error
        return read_checkpoint(path)
    if text.startswith("pretrained:"):
        if model is None:
            raise ZooError(f"{text}: shipped weights are named by the model they are for; pass model=NAME")
        loaded = load_shipped(model, text.removeprefix("pretrained:"))
    else:
        loaded = from_pretrained(text)
    record = {"model": loaded.zoo_name, "kwargs": dict(loaded.zoo_kwargs), "prefix": "",
              "preprocessing": loaded.zoo_preprocessing}
    return {RECORD: record, "state_dict": loaded.state_dict()}  # state_dict: tied tensors under each name


def _run_checkpoint(run: Path, metrics: dict[str, Any]) -> Path:
    """The run's best checkpoint (metrics.json names it; the folder may have moved since), else last.ckpt."""
    named = metrics.get("best_checkpoint")
    candidates = [run / "checkpoints" / Path(named).name, Path(named)] if named else []
    candidates += sorted((run / "checkpoints").glob("best*.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True)
    candidates.append(run / "checkpoints" / "last.ckpt")
    for c in candidates:
        if c.is_file():
            return c
    raise ZooError(f"{run} has no checkpoint (checkpoints/best-*.ckpt or last.ckpt): pass the folder of a run "
                   "that train.py finished, e.g. outputs/<date>/<time>.")


def _data_checksums(recipe: dict[str, Any]) -> dict[str, str] | None:
    """sha256 of the run's data files, from its data root's manifest (``checksums.sha256``), where it names them."""
    data = recipe.get("data") or {}
    dataset, root = str(data.get("dataset") or ""), str(data.get("root") or "")
    if root.startswith("${paths.data_dir}"):  # the unresolved default: $ZOO_DATA_DIR, else ./data
        import os

        root = os.environ.get("ZOO_DATA_DIR", "./data") + root.removeprefix("${paths.data_dir}")
    manifest = Path(root).expanduser() / str(data.get("manifest") or "checksums.sha256")
    if not dataset or not manifest.is_file():
        return None

    def norm(s: str) -> str:
        return s.lower().replace("-", "").replace("_", "")

    d, found = norm(dataset), {}
    for line in manifest.read_text().splitlines():
        digest, _, rel = line.strip().partition("  ")
        top = norm(rel.split("/")[0])
        if top == d or (top.startswith(d) and not top[len(d)].isdigit()):  # cifar10 is not cifar100's folder
            found[rel] = digest
    return found or None


def export_run(run_dir: str | Path, out_dir: str | Path) -> Path:
    """``zoo export-run``: a run folder's best checkpoint -> a :func:`save_pretrained` folder, with the run's
    metrics (``metrics.json``), its Hydra config (``.hydra/config.yaml`` + overrides) as the recipe, and the
    sha256 of its data files where the data root's manifest has them."""
    import yaml

    from zoo.checkpoint import load_model

    run = Path(run_dir)
    if not run.is_dir():
        raise ZooError(f"{run}: no such run folder; pass a folder written by train.py (outputs/<date>/<time>).")
    metrics_path = run / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    ckpt = _run_checkpoint(run, metrics)
    model = load_model(ckpt)
    if "best_checkpoint" in metrics:
        metrics["best_checkpoint"] = ckpt.name  # a path on the training machine says nothing elsewhere
    recipe: dict[str, Any] = {}
    hydra_dir = run / ".hydra"
    if (hydra_dir / "config.yaml").is_file():
        recipe["config"] = yaml.safe_load((hydra_dir / "config.yaml").read_text())
    if (hydra_dir / "overrides.yaml").is_file():
        recipe["overrides"] = yaml.safe_load((hydra_dir / "overrides.yaml").read_text()) or []
    if recipe:
        recipe["command"] = " ".join(["python train.py", *recipe.get("overrides", [])])
    data = _data_checksums(recipe.get("config") or {})
    return save_pretrained(model, out_dir, metrics=metrics or None, recipe=recipe or None, data=data)
