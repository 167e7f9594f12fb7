"""Makers of bad inputs for tests/bad_inputs.py: files in the wrong format, configs composed as train.py composes
them, commands run as a user runs them. Each takes the empty folder a case works in."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import torch

import zoo
from tasks.cli_checks import DEBUG_ENV
from tasks.data import CharLMDataModule, ImageFolderDataModule
from tests.conftest import CONF_DIR
from zoo.predict import classify_images

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "zoo" / "weights" / "lenet5-mnist"


def compose_train(folder: Path, *overrides: str, resolve: bool = True, hydra: bool = False) -> Any:
    """The training config as train.py composes it; the data root points nowhere (no case reads real data)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from tasks.resolve import resolve_config

    GlobalHydra.instance().clear()
    overrides = (f"paths.output_dir={folder / 'run'}", f"paths.data_dir={folder / 'nowhere'}", *overrides)
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("train", overrides=list(overrides), return_hydra_config=hydra)
        return resolve_config(cfg, overrides=overrides).cfg if resolve else cfg


def run_train(folder: Path, *overrides: str, resolve: bool = True, hydra: bool = False) -> None:
    """``train.py OVERRIDES`` in this process (tasks.runner.run on the composed config)."""
    from tasks.runner import run

    run(compose_train(folder, *overrides, resolve=resolve, hydra=hydra))


def validate_train(folder: Path, *overrides: str) -> None:
    from tasks.validate import validate_config

    validate_config(compose_train(folder, *overrides))


def run_command(*argv: str) -> None:
    """Run a command as a user would (no debug variables set); its stderr and exit status come back."""
    env = {k: v for k, v in os.environ.items() if k not in DEBUG_ENV}
    r = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, env=env, timeout=120)
    sys.stderr.write(r.stderr)
    raise SystemExit(r.returncode)


def zoo_command(*argv: str) -> None:
    """The ``zoo`` command in this process."""
    from zoo.cli import main

    raise SystemExit(main(list(argv)))


def write_file(folder: Path, name: str, content: str | bytes) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def csv_file(folder: Path, text: str | bytes) -> Path:
    return write_file(folder, "table.csv", text)


TABLE = "size,rooms,label\n" + "".join(f"{50 + 7 * i},{1 + i % 4},{'ab'[i % 2]}\n" for i in range(40))


def table_run(folder: Path, text: str | bytes, *overrides: str) -> None:
    run_train(folder, "data=csv", f"data.path={csv_file(folder, text)}", "data.target=label", *overrides)


def wav_file(folder: Path, *, channels: int = 1, rate: int = 8000) -> Path:
    path = folder / "digit.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\0\0" * (channels * rate // 10))
    return path


def png(path: Path) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (12, 12), (200, 30, 20)).save(path)
    return path


def image_folder(folder: Path, *, classes: tuple[str, ...] = ("cat", "dog"), images: int = 2) -> Path:
    for name in classes:
        (folder / "images" / name).mkdir(parents=True)
        for i in range(images):
            png(folder / "images" / name / f"{i}.png")
    return folder / "images"


def image_folder_setup(folder: Path, *, images: int = 2, extra: str = "", content: str = "") -> None:
    """An image folder of two classes, with ``extra`` (a relative path) added: a file, or a folder if it ends
    with "/"."""
    root = image_folder(folder, images=images)
    if extra.endswith("/"):
        (root / extra).mkdir()
    elif extra:
        write_file(root, extra, content)
    ImageFolderDataModule(path=str(root), img_size=8).setup("fit")


def text_file(folder: Path, content: str | bytes) -> None:
    path = write_file(folder, "book.txt", content)
    CharLMDataModule(root=str(folder), dataset="text_file", path=str(path), block_size=16).setup("fit")


def pretrained_copy(folder: Path, edit: Callable[[Path], Any]) -> None:
    copy = Path(shutil.copytree(SHIPPED, folder / "lenet5"))
    edit(copy)
    zoo.from_pretrained(copy)


def classify(folder: Path, *names: str, in_chans: int | None = None) -> None:
    model = zoo.from_pretrained(SHIPPED)
    if in_chans is not None:  # a contract saved by hand that disagrees with the model
        model.zoo_preprocessing = {**model.zoo_preprocessing, "in_chans": in_chans}
    classify_images(model, [folder / n for n in names])


def lenet_file(folder: Path, **wrap: Any) -> Path:
    """A checkpoint of lenet5 in some layout: ``wrap`` maps a key to a function of the state dict."""
    state = zoo.create_model("lenet5").state_dict()
    path = folder / "model.ckpt"
    torch.save({k: f(state) for k, f in wrap.items()} if wrap else state, path)
    return path


def truncated(folder: Path) -> Path:
    path = zoo.save_model(zoo.create_model("lenet5"), folder / "model.pt", name="lenet5", kwargs={})
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def no_gpu() -> contextlib.ExitStack:
    stack = contextlib.ExitStack()
    stack.enter_context(mock.patch("torch.cuda.is_available", return_value=False))
    stack.enter_context(mock.patch("torch.backends.mps.is_available", return_value=False))
    return stack


def gpu_trainer(folder: Path) -> None:
    with no_gpu():
        validate_train(folder, "trainer=gpu")


def used_output_folder(folder: Path) -> None:
    write_file(folder, "run/metrics.json", "{}")
    validate_train(folder)
