"""Every branch of the selection decision tree trains on real data (a generic walk over zoo.select.TREE).

For each route to each leaf, the branch's data is found from the data configs' own ``meta`` (modality and
task), ``model=auto`` with the route's ``goal.*`` answers must pick that leaf, and the run trains it for one
batch (``trainer.fast_dev_run``), at the CPU-quick sizes of tests/conftest.py where it has them. A new leaf, or a
new data config, is picked up unedited; a leaf with no data of its branch fails, naming the branch.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from PIL import Image

from tasks.runner import run
from tests.conftest import SMALL_DATA, SMALL_MODEL
from zoo.select import GOALS, TREE, as_arguments, routes_to
from zoo.vocab import GENERATIVE_TASKS

ROOT = Path(__file__).resolve().parents[1]
ROUTES = [(name, route) for name in sorted({n.model for n in TREE.values() if n.model}) for route in routes_to(name)]
LARGE_SIDE = 72  # a picture larger than zoo.select.LARGE_IMAGE, for the "large input" branch


def _data_configs() -> dict[str, dict]:
    """data config name -> its ``data`` block (only configs that run as they are: no required ``???`` value)."""
    out = {}
    for path in sorted((ROOT / "conf" / "data").glob("*.yaml")):
        text = path.read_text()
        if "???" in text:  # needs the user's path (own data): exercised by its own tests
            continue
        out[path.stem] = yaml.safe_load(text).get("data") or {}
    return out


DATA = _data_configs()
DEFAULT_DATA = next(d["data"] for d in yaml.safe_load((ROOT / "conf" / "train.yaml").read_text())["defaults"]
                    if isinstance(d, dict) and "data" in d)


def branch_data(name: str, args: dict) -> str:
    """The data of a route's branch: its modality and task (any image data serves the generation branch).

    Among several: a dataset the model has its own recipe for (conf/recipe/own/<model>_<data>.yaml), else the
    default run's data (conf/train.yaml) if it serves the branch, else one with CPU-quick test sizes
    (tests/conftest.py SMALL_DATA), else the alphabetical first.
    """
    modality = args["modality"]
    task = args.get("task")
    wanted = "classify" if task in GENERATIVE_TASKS else task
    found = [d for d, block in DATA.items()
             if (block.get("meta") or {}).get("modality") == modality
             and (wanted is None or (block.get("meta") or {}).get("task") == wanted)]
    assert found, f"no data config serves the tree's branch {args} (leaf {name}): add one with data.meta set"
    own = [d for d in found if (ROOT / "conf" / "recipe" / "own" / f"{name}_{d}.yaml").is_file()]
    default = [d for d in found if d == DEFAULT_DATA]
    quick = [d for d in found if d in SMALL_DATA]
    return (own or default or quick or found)[0]


def _image_folder(root: Path) -> Path:
    """A tiny ImageFolder tree of LARGE_SIDE-pixel pictures, two classes."""
    for label, value in (("dark", 40), ("light", 210)):
        (root / label).mkdir(parents=True)
        for i in range(6):
            Image.new("RGB", (LARGE_SIDE, LARGE_SIDE), (value + i, value, value)).save(root / label / f"{i}.png")
    return root


@pytest.mark.parametrize("name,route", ROUTES, ids=[f"{n}:{'/'.join(d.answer for d in r)}" for n, r in ROUTES])
def test_every_branch_trains_its_leaf_on_its_data(name, route, compose_cfg, tmp_path):
    args = as_arguments(route)
    goals = [f"goal.{k}={v}" for k, v in args.items() if k in GOALS]
    if args.get("img_size"):  # the large-input branch: the user's own pictures at LARGE_SIDE pixels
        data = ["data=image_folder", f"data.path={_image_folder(tmp_path / 'pictures')}",
                f"data.img_size={LARGE_SIDE}", "data.batch_size=4"]
    else:
        data = [f"data={branch_data(name, args)}"]
    if args.get("task") in GENERATIVE_TASKS:
        goals.append(f"goal.task={args['task']}")
    chosen = compose_cfg(*data, "model=auto", *goals).model.name
    assert chosen == name, f"model=auto on {data} with {goals} chose {chosen}, the tree says {name}"
    small = [*SMALL_MODEL.get(name, []), *SMALL_DATA.get(data[0].removeprefix("data="), [])]
    cfg = compose_cfg(*data, f"model={name}", *goals, *small, "trainer.fast_dev_run=true",
                      "callbacks.progress_bar=null", "logger=none")
    metrics = run(cfg)
    assert metrics["model"] == name and metrics["params"] > 0 and metrics["steps"] >= 1
