"""The `zoo` command: list / info / select as documented in the README, without Lightning or Hydra."""

import json
import subprocess
import sys
from pathlib import Path

import zoo
from zoo.cli import main
from zoo.select import mermaid

ROOT = Path(__file__).resolve().parents[1]


def _zoo(capsys, *argv):
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


def _rows(out):
    return [line.split() for line in out.splitlines()[2:]]  # below the header and its rule


def test_list_shows_the_matching_models_with_parameter_counts(capsys):
    rc, out, _ = _zoo(capsys, "list", "resnet*")
    rows = _rows(out)
    assert rc == 0 and [r[0] for r in rows] == zoo.list_models("resnet*")
    for r in rows:
        assert f"{zoo.count_params(r[0]):,}" in r  # counted on the meta device, equal to a real build


def test_list_filters_by_task_family_and_modality(capsys):
    for flags, expected in ((("--task", "lm"), zoo.list_models(task="lm")),
                            (("--family", "gan"), zoo.list_models(family="gan")),
                            (("--modality", "timeseries"), zoo.list_models(modality="timeseries"))):
        rc, out, _ = _zoo(capsys, "list", *flags)
        assert rc == 0 and [r[0] for r in _rows(out)] == expected and expected
    rc, _, err = _zoo(capsys, "list", "nothing*")
    assert rc == 1 and "no model matches" in err


def test_list_markdown_is_the_readme_models_table(capsys):
    rc, out, _ = _zoo(capsys, "list", "--markdown")
    lines = out.splitlines()
    assert rc == 0 and lines[1].startswith("| --- |") and len(lines) == 2 + len(zoo.list_models())
    readme = (ROOT / "README.md").read_text()
    assert all(line in readme for line in lines)  # README's table is regenerated with `zoo list --markdown`


def test_info_shows_metadata_default_arguments_and_the_branch_that_selects_it(capsys):
    rc, out, _ = _zoo(capsys, "info", "mobilenet_tiny")
    assert rc == 0
    assert "family:      mobilenet" in out and f"{zoo.count_params('mobilenet_tiny'):,}" in out
    defaults = zoo.model_info("mobilenet_tiny").defaults
    assert defaults and all(f"  {k}: {v!r}\n" in out for k, v in defaults.items())  # the builder's, not a file's
    assert "python train.py model=mobilenet_tiny" in out
    assert "need high accuracy: light -> mobilenet_tiny" in out and "goal.accuracy=light" in out
    flags = next(line for line in out.splitlines() if line.lstrip().startswith("zoo select"))
    flags = flags.split("zoo select")[1].split("|")[0]
    rc, out, _ = _zoo(capsys, "select", *flags.split())  # the flags info prints select the model
    assert rc == 0 and out.splitlines()[0] == "mobilenet_tiny"


def test_info_of_an_unknown_name_suggests_close_ones(capsys):
    rc, _, err = _zoo(capsys, "info", "resnet21")
    assert rc == 2 and "Did you mean" in err and "resnet20" in err


def test_select_prints_the_choice_and_its_path(capsys):
    rc, out, _ = _zoo(capsys, "select", "--modality", "image", "--accuracy", "high")
    assert rc == 0 and out.splitlines()[0] == "resnet20"
    assert "need high accuracy: high" in out and "ResNet for input size: small -> resnet20" in out
    rc, out, _ = _zoo(capsys, "select", "--modality", "text", "--task", "translate", "--json")
    assert rc == 0 and json.loads(out)["model"] == "transformer"
    rc, out, _ = _zoo(capsys, "select", "--mermaid")
    assert rc == 0 and out == mermaid()
    rc, _, err = _zoo(capsys, "select", "--modality", "image", "--accuracy", "medium")
    assert rc == 2 and "high, light" in err


CHILD = r"""
import runpy, sys
from pathlib import Path

script = Path(sys.executable).parent / "zoo"  # the console script pip installed (pyproject: zoo.cli:main)
assert script.is_file(), f"no console script at {script}: pip install -e ."
for argv in (["list"], ["info", "gpt"], ["select", "--modality", "image", "--accuracy", "light"]):
    sys.argv = ["zoo", *argv]
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as e:
        assert not e.code, (argv, e.code)
print("IMPORTED", sorted({m.split(".")[0] for m in sys.modules} & {"lightning", "lightning_fabric",
                                                                   "pytorch_lightning", "hydra"}))
"""


def test_console_script_runs_without_lightning_or_hydra():
    r = subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "IMPORTED []" in r.stdout
    assert "transformer_encoder" in r.stdout and "mobilenet_tiny\n" in r.stdout


def test_output_cut_short_by_a_pipe_ends_quietly():
    r = subprocess.run(f"{sys.executable} -m zoo.cli info mobilenet_tiny | head -1", shell=True, cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.stdout.startswith("mobilenet_tiny:") and "Traceback" not in r.stderr and "BrokenPipe" not in r.stderr
