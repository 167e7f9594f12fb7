"""Bad inputs and the one message each gets: the single list that tests/test_bad_inputs.py runs and that
``python -m tests.bad_inputs`` prints as the README's Markdown table (case, area, first line of the message).

Each case provokes one mistake a user makes (a typo on the command line, a wrong value in a config, a call of
the Python API that cannot work, a data file in the wrong format, a checkpoint that cannot be loaded) in an
empty folder of its own, and names the error the Python call raises and what the first line of its message
must say. A case whose call ends the program (``SystemExit``: the command-line checks, the ``zoo`` and
``train.py`` commands) is judged by what it printed; every other error is shown as ``train.py`` shows it
(:func:`tasks.cli_checks.report_user_error`): one line, exit status 2, no traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import zoo
from tasks.cli_checks import check_output_dirs, check_overrides, expand_resume, report_user_error
from tasks.data import DataError, ImageFolderDataModule
from tasks.data.speech import read_wav
from tasks.validate import ConfigError
from tests.bad_input_makers import (
    ROOT,
    SHIPPED,
    TABLE,
    classify,
    csv_file,
    gpu_trainer,
    image_folder,
    image_folder_setup,
    lenet_file,
    png,
    pretrained_copy,
    run_command,
    run_train,
    table_run,
    text_file,
    truncated,
    used_output_folder,
    validate_train,
    wav_file,
    write_file,
    zoo_command,
)
from tests.conftest import CONF_DIR
from tests.test_reliability import BAD_INPUTS
from zoo.checkpoint import CheckpointError
from zoo.inputs import InputShapeError
from zoo.predict import sample_images
from zoo.preprocess import CharTokenizer
from zoo.pretrained import read_weights
from zoo.registry import UnknownModelError, ZooError

AREAS = ("cli", "config", "api", "data", "checkpoint")
# 4 KiB of seeded noise: the same bytes, so the same message, every time
NOISE = torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0), dtype=torch.uint8).numpy().tobytes()


@dataclass(frozen=True)
class BadInput:
    """One mistake: ``provoke(folder)`` makes it in an empty ``folder``; ``error`` is what the call raises
    (``SystemExit`` for a command) and ``message`` a regex the first line of the message must match."""

    id: str
    area: str
    provoke: Callable[[Path], Any]
    error: type[BaseException]
    message: str


@dataclass(frozen=True)
class Outcome:
    """What a case raised and what the command line showed for it."""

    error: BaseException
    message: str  # the first line of the message ("error: " taken off a command's)
    single_line: bool  # the whole message is that one line
    exit_code: Any
    stderr: str


def trigger(case: BadInput, folder: Path) -> Outcome:
    """Provoke ``case`` in ``folder``; a raised error is then shown as ``train.py`` would show it."""
    shown = io.StringIO()
    with contextlib.redirect_stderr(shown):
        try:
            case.provoke(folder)
        except BaseException as e:  # SystemExit too: a command's end
            error = e
        else:
            raise AssertionError(f"{case.id}: no error was raised")
    if isinstance(error, SystemExit):
        lines = [line.removeprefix("error: ") for line in shown.getvalue().splitlines() if line.startswith("error: ")]
        return Outcome(error, lines[0] if lines else "", len(lines) == 1, error.code, shown.getvalue())
    shown = io.StringIO()
    code: Any = None
    with contextlib.redirect_stderr(shown):
        try:
            with report_user_error():
                raise error
        except SystemExit as e:
            code = e.code
    text = str(error)
    return Outcome(error, text.splitlines()[0] if text else "", "\n" not in text.strip(), code, shown.getvalue())


def _config_case(overrides: list[str], message: str) -> BadInput:
    return BadInput(" ".join(overrides), "config", lambda f: run_train(f, *overrides), ConfigError, message)


CLI = [
    BadInput("train.py model=lenet6", "cli", lambda f: check_overrides(["model=lenet6"], CONF_DIR), SystemExit,
             r"^unknown model 'lenet6'. Did you mean: lenet5"),
    BadInput("train.py trainer.max_epoch=3", "cli", lambda f: check_overrides(["trainer.max_epoch=3"], CONF_DIR),
             SystemExit, r"^unknown config key 'trainer.max_epoch'. Did you mean: trainer.max_epochs\b.*\+trainer.max_epoch="),
    BadInput("train.py hydra.run.dir=<under a file>", "cli",
             lambda f: check_output_dirs([f"hydra.run.dir={write_file(f, 'a-file', 'x')}/run"]), SystemExit,
             r"hydra.run.dir=.*a-file/run: cannot write the run's output folder there"),
    BadInput("train.py resume=<not a run folder>", "cli", lambda f: expand_resume([f"resume={f / 'nowhere'}"]),
             SystemExit, r"^resume=.*nowhere: no run folder there .*overrides.yaml is missing"),
    BadInput("train.py data=csv <empty file> (a subprocess)", "cli",
             lambda f: run_command(sys.executable, "train.py", "data=csv", f"data.path={csv_file(f, '')}",
                                "data.target=label", f"hydra.run.dir={f / 'run'}"), SystemExit,
             r"table.csv: it is empty. A CSV with a header row"),
    BadInput("zoo predict MODEL <not an image>", "cli",
             lambda f: zoo_command("predict", str(SHIPPED), str(write_file(f, "notes.txt", "hello"))), SystemExit,
             r"notes.txt is not an image file PIL can read"),
    BadInput("zoo predict <missing .ckpt>", "cli", lambda f: zoo_command("predict", str(f / "model.ckpt"), "x.png"),
             SystemExit, r"^checkpoint not found: .*model.ckpt"),
    BadInput("zoo predict MODEL (no inputs)", "cli", lambda f: zoo_command("predict", str(SHIPPED)), SystemExit,
             r"give the classify model inputs \(image files, WAV files, CSV files or sentences\)"),
    BadInput("zoo info lenet6", "cli", lambda f: zoo_command("info", "lenet6"), SystemExit,
             r"^unknown model 'lenet6'. Did you mean: lenet5"),
    BadInput("zoo select (no modality)", "cli", lambda f: zoo_command("select"), SystemExit, r"zoo select needs --modality"),
]

CONFIG = [_config_case(overrides, message) for overrides, message in BAD_INPUTS] + [
    BadInput("trainer=gpu on a machine without one", "config", gpu_trainer, ConfigError,
             r"trainer.accelerator='gpu' but this machine has no usable GPU"),
    BadInput("a fresh run into another run's folder", "config", used_output_folder, ConfigError,
             r"output folder .*run already holds a run \(metrics.json is there\). Resume it with resume="),
    BadInput("data=image_folder without data.path", "config",
             lambda f: run_train(f, "data=image_folder", resolve=False, hydra=True), ConfigError,
             r"^data.path must be set for data=image_folder: add data.path=\.\.\."),
    BadInput("data=csv without data.path", "config", lambda f: run_train(f, "data=csv"), DataError,
             r"^data=csv needs the file and the column to predict"),
    BadInput("model.name=lenet6", "config", lambda f: validate_train(f, "model.name=lenet6"), UnknownModelError,
             r"^unknown model 'lenet6'. Did you mean: lenet5"),
    BadInput("+model.num_clases=3", "config", lambda f: run_train(f, "+model.num_clases=3"), ConfigError,
             r"^model.num_clases is not an argument of lenet5. Did you mean: num_classes\b"),
]

API = [
    BadInput("create_model('resnet21')", "api", lambda f: zoo.create_model("resnet21"), UnknownModelError,
             r"^unknown model 'resnet21'. Did you mean: .*resnet20"),
    BadInput("create_model('lenet5', num_clases=3)", "api", lambda f: zoo.create_model("lenet5", num_clases=3),
             ZooError, r"model 'lenet5' does not take these arguments .*num_clases.* It accepts: num_classes"),
    BadInput("lenet5 on RGB images", "api", lambda f: zoo.create_model("lenet5")(torch.zeros(1, 3, 28, 28)),
             InputShapeError, r"lenet5 was built for 1-channel images .*convert the images \(to grey\)"),
    BadInput("lenet5 on 32x32 images", "api", lambda f: zoo.create_model("lenet5")(torch.zeros(1, 1, 32, 32)),
             InputShapeError, r"lenet5 was built for 28x28 images .*resize the images to 28x28"),
    BadInput("create_model('lenet5', pretrained='svhn')", "api",
             lambda f: zoo.create_model("lenet5", pretrained="svhn"), ZooError,
             r"no shipped weights for 'lenet5' trained on 'svhn'. Shipped: lenet5 \(pretrained='mnist'\)"),
    BadInput("create_model('lenet5', pretrained='mnist', num_classes=5)", "api",
             lambda f: zoo.create_model("lenet5", pretrained="mnist", num_classes=5), ZooError,
             r"the shipped lenet5 \(mnist\) was built with .*'num_classes': 5\} differ"),
    BadInput("read_weights('pretrained:svhn') without model=", "api",
             lambda f: read_weights("pretrained:svhn"), ZooError,
             r"pretrained:svhn: shipped weights are named by the model they are for; pass model=NAME"),
    BadInput("from_pretrained(<no such folder>)", "api", lambda f: zoo.from_pretrained(f / "nowhere"), ZooError,
             r"from_pretrained\('.*nowhere'\): no such folder, and not a Hugging Face Hub id"),
    BadInput("from_pretrained(<an empty folder>)", "api", lambda f: zoo.from_pretrained(f), ZooError,
             r"is not a pretrained model folder: config.json, model.safetensors missing"),
    BadInput("from_pretrained(<config.json not JSON>)", "api",
             lambda f: pretrained_copy(f, lambda d: write_file(d, "config.json", "{model: lenet5")), ZooError,
             r"config.json is not valid JSON"),
    BadInput("from_pretrained(<another library's folder>)", "api",
             lambda f: pretrained_copy(f, lambda d: write_file(d, "config.json", json.dumps({"model_type": "bert"}))),
             ZooError, r"config.json is not a dnn-zoo config .*another library"),
    BadInput("from_pretrained(<edited weights>)", "api",
             lambda f: pretrained_copy(f, lambda d: write_file(d, "model.safetensors", b"\0" * 64)), ZooError,
             r"model.safetensors does not match the sha256 in .*config.json"),
    BadInput("save_pretrained(<a model not from the registry>)", "api",
             lambda f: zoo.save_pretrained(torch.nn.Linear(2, 2), f), ZooError,
             r"^save_pretrained needs the model's registry name"),
    BadInput("sample_images(<a classifier>)", "api",
             lambda f: sample_images(zoo.create_model("lenet5"), f / "x.png"), ZooError,
             r"has no prior to sample from; generate from a checkpoint of one of: .*dcgan"),
    BadInput("a prompt with characters outside the vocabulary", "api",
             lambda f: CharTokenizer(list("abc ")).encode("a cab?"), ZooError,
             r"characters \['\?'\] are not in the model's vocabulary"),
]

CHECKPOINT = [
    BadInput("load_model(<random bytes>)", "checkpoint",
             lambda f: zoo.load_model(write_file(f, "model.ckpt", NOISE)), CheckpointError,
             r"cannot read checkpoint .*\(truncated or corrupted: .*\)\. Use another copy"),
    BadInput("load_model(<half a file>)", "checkpoint", lambda f: zoo.load_model(truncated(f)), CheckpointError,
             r"cannot read checkpoint .*model.pt \(truncated or corrupted"),
    BadInput("load_model(<a folder>)", "checkpoint", lambda f: zoo.load_model(f), CheckpointError,
             r"^checkpoint not found: .* It is a folder: pass a file in it"),
    BadInput("load_model(<torch.save(model.state_dict())>)", "checkpoint", lambda f: zoo.load_model(lenet_file(f)),
             CheckpointError, r"holds a bare state_dict .*model.load_state_dict"),
    BadInput("load_model(<weights without the model's name>)", "checkpoint",
             lambda f: zoo.load_model(lenet_file(f, state_dict=lambda s: s)), CheckpointError,
             r"is not a zoo checkpoint: it has weights but no description of the model"),
    BadInput("load_model(<a pickled object>)", "checkpoint",
             lambda f: zoo.load_model(lenet_file(f, state_dict=lambda s: s, args=lambda s: argparse.Namespace())),
             CheckpointError, r"refusing to load .*pickled Python objects.*argparse.Namespace"),
    BadInput("init_from=<missing checkpoint>", "checkpoint", lambda f: run_train(f, f"init_from={f / 'pre.ckpt'}"),
             CheckpointError, r"^checkpoint not found: .*pre.ckpt. Pass an existing file"),
    BadInput("ckpt_path=<missing checkpoint>", "checkpoint", lambda f: run_train(f, f"ckpt_path={f / 'last.ckpt'}"),
             CheckpointError, r"^checkpoint not found: .*last.ckpt. Pass an existing .ckpt file, or ckpt_path=last"),
]

DATA = [
    BadInput("data=csv without the target column", "data", lambda f: table_run(f, TABLE.replace("label", "y")),
             DataError, r"table.csv: data.target names column 'label', which is not in the file. Its columns: size"),
    BadInput("data=csv with text in a numeric column", "data",
             lambda f: table_run(f, TABLE.replace("\n64,", "\n6 4,")), DataError,
             r"column 'size' holds numbers, but 1 of its 40 cells is not a number \('6 4'\).*data.categorical"),
    BadInput("data=csv with a header and no rows", "data", lambda f: table_run(f, "size,rooms,label\n"),
             DataError, r"table.csv: it has a header row but no data rows"),
    BadInput("data=csv with ragged rows", "data", lambda f: table_run(f, TABLE + "7,1,a,extra\n"), DataError,
             r"1 row does not have the header's 3 fields \(first at line 42\); is it comma-separated"),
    BadInput("data=csv not in UTF-8", "data", lambda f: table_run(f, TABLE.encode("utf-16")),
             DataError, r"table.csv is not UTF-8 text .*save it as UTF-8 CSV"),
    BadInput("a stereo WAV", "data", lambda f: read_wav(wav_file(f, channels=2)), DataError,
             r"digit.wav: 2 channel\(s\), 16-bit, 8000 Hz; expected mono 16-bit PCM at 8000 Hz: convert it: ffmpeg"),
    BadInput("a 44.1 kHz WAV", "data", lambda f: read_wav(wav_file(f, rate=44100)), DataError,
             r"1 channel\(s\), 16-bit, 44100 Hz; expected mono .* -ar 8000"),
    BadInput("an empty WAV file", "data", lambda f: read_wav(write_file(f, "digit.wav", b"")), DataError,
             r"digit.wav is not a readable WAV file \(empty, 0 bytes\); replace it"),
    BadInput("a text file named .wav", "data", lambda f: read_wav(write_file(f, "digit.wav", "hello, this is not a recording")), DataError,
             r"digit.wav is not a readable WAV file \(file does not start with RIFF id\)"),
    BadInput("a missing WAV file", "data", lambda f: read_wav(f / "digit.wav"), DataError,
             r"digit.wav: no such WAV file"),
    BadInput("data=image_folder with no images", "data", lambda f: image_folder_setup(f, images=0), DataError,
             r"^no images under .*images \(looked for .jpg"),
    BadInput("data=image_folder with a class of no images", "data",
             lambda f: image_folder_setup(f, extra="cow/"), DataError,
             r"class folder\(s\) 'cow' under .*images hold no images"),
    BadInput("data=image_folder with a non-image .png", "data",
             lambda f: image_folder_setup(f, extra="cat/broken.png", content="not a picture"), DataError,
             r"cannot read image .*broken.png \(cannot identify image file .*\); remove or replace the file"),
    BadInput("data=image_folder with one class", "data",
             lambda f: ImageFolderDataModule(path=str(image_folder(f, classes=("cat",)))), DataError,
             r"has 1 class folder\(s\) \(cat\); a classifier needs at least 2"),
    BadInput("data=text_file, an empty file", "data", lambda f: text_file(f, ""), DataError,
             r"book.txt is empty: a language model learns from the text in it"),
    BadInput("data=text_file, a few words", "data", lambda f: text_file(f, "to be or not"), DataError,
             r"book.txt is too short \(12 characters\).*about 340 characters for data.block_size=16"),
    BadInput("data=text_file not in UTF-8", "data", lambda f: text_file(f, "caf\xe9 ".encode("latin-1") * 99),
             DataError, r"book.txt is not UTF-8 text .*replace the file"),
    BadInput("predict on a file that is not an image", "data", lambda f: classify(f, write_file(f, "a.png", "hi").name),
             ZooError, r"a.png is not an image file PIL can read"),
    BadInput("predict on a missing image", "data", lambda f: classify(f, "gone.png"), ZooError,
             r"gone.png: no such file. Pass image files"),
    BadInput("predict with a contract of other channels", "data",
             lambda f: classify(f, png(f / "a.png").name, in_chans=3), ZooError,
             r"lenet5 takes 1-channel images \(in_chans=1\) but its saved preprocessing makes 3-channel ones"),
]

CASES = [*CLI, *CONFIG, *API, *CHECKPOINT, *DATA]


def markdown(rows: list[tuple[str, str, str]]) -> str:
    """``(case, area, message)`` rows as a Markdown table (``|`` escaped, code in backticks)."""
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["| case | area | first line of the message |", "| --- | --- | --- |"]
    lines += [f"| `{cell(case)}` | {area} | {cell(message)} |" for case, area, message in rows]
    return "\n".join(lines)


def main() -> None:
    torch.set_num_threads(1)
    rows = []
    with contextlib.redirect_stdout(sys.stderr):  # a run's own prints ([selection] ...) stay out of the table
        for case in CASES:
            with tempfile.TemporaryDirectory() as tmp:
                folder = Path(tmp).resolve()
                out = trigger(case, folder)
                rows.append((case.id, case.area, out.message.replace(str(folder), "DIR").replace(str(ROOT), ".")))
    print(markdown(rows))


if __name__ == "__main__":
    main()
