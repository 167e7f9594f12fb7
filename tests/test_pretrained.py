"""Using a trained model: save_pretrained/from_pretrained, shipped weights, zoo predict, train=false, torch.hub."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import zoo
from tests.conftest import fast_overrides
from zoo.cli import main as zoo_main

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "zoo" / "weights" / "lenet5-mnist"

# One model of every family (the smallest), plus the weight-tied ones (safetensors stores shared tensors once).
ROUND_TRIP = r"""
import json, sys, torch
torch.set_num_threads(1)
import zoo
from zoo.cli import count_params_fast

def flat(out):
    if isinstance(out, torch.Tensor):
        return [out]
    return [t for o in out for t in flat(o)] if isinstance(out, (tuple, list)) else []

smallest = {}
for n in zoo.list_models():
    fam, size = zoo.model_info(n).family, count_params_fast(n)
    if fam not in smallest or size < smallest[fam][1]:
        smallest[fam] = (n, size)
names = sorted({n for n, _ in smallest.values()} | {"gpt", "transformer"})
report = {}
for i, name in enumerate(names):
    torch.manual_seed(i)
    model = zoo.create_model(name).eval()
    folder = f"{sys.argv[1]}/{name}"
    zoo.save_pretrained(model, folder, name=name, kwargs={}, metrics={"test/acc": 0.5})
    loaded = zoo.from_pretrained(folder)
    x = zoo.example_inputs(name)
    with torch.no_grad():
        torch.manual_seed(0); a = flat(model(*x))
        torch.manual_seed(0); b = flat(loaded(*x))
    same_state = all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())
    report[name] = bool(a) and same_state and all(torch.equal(p, q) for p, q in zip(a, b, strict=True))
print(json.dumps({"report": report, "training_side": sorted({m.split(".")[0] for m in sys.modules}
                  & {"lightning", "pytorch_lightning", "hydra", "omegaconf", "tasks"})}))
"""


def test_save_from_pretrained_round_trip_every_family_without_lightning_or_hydra(tmp_path):
    r = subprocess.run([sys.executable, "-c", ROUND_TRIP, str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["training_side"] == []
    families = {zoo.model_info(n).family for n in out["report"]}
    assert families == {zoo.model_info(n).family for n in zoo.list_models()}
    assert out["report"] and all(out["report"].values()), out["report"]  # bit-identical outputs and weights
    for folder in tmp_path.iterdir():  # no pickle: safetensors, JSON and Markdown only
        assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
        header_len = int.from_bytes((folder / "model.safetensors").read_bytes()[:8], "little")
        json.loads((folder / "model.safetensors").read_bytes()[8 : 8 + header_len])  # a JSON header, then raw tensors
        assert b"\x80\x02" not in (folder / "config.json").read_bytes()
    card = (tmp_path / "lenet5" / "README.md").read_text()
    assert "LeCun" in card and "61,706" in card and "from_pretrained" in card


def _mnist_test(data_dir: Path) -> tuple[torch.Tensor, torch.Tensor]:
    from tasks.data.vision import load_arrays

    return load_arrays("mnist", str(data_dir), False, False, "checksums.sha256")


SHIPPED_ALL = sorted(p for p in (ROOT / "zoo" / "weights").iterdir() if (p / "config.json").is_file())


@pytest.mark.parametrize("folder", SHIPPED_ALL, ids=lambda p: p.name)
def test_every_shipped_model_reproduces_its_card(folder, data_dir):
    # create_model(name, pretrained=data) on the data's whole test split, evaluated as the run evaluated it:
    # the recipe's precision (bf16 autocast) and test-time augmentation (task.tta) are read from config.json.
    from tasks.data.augment import tta_logits
    from tasks.data.vision import load_arrays
    from tasks.precision import bf16_is_native

    config = json.loads((folder / "config.json").read_text())
    run = config["recipe"]["config"]
    model = zoo.create_model(config["model"], pretrained=run["data"]["dataset"])
    x, y = load_arrays(run["data"]["dataset"], str(data_dir), False, False, "checksums.sha256")
    pre = model.zoo_preprocessing
    mean, std = torch.tensor(pre["mean"]).view(1, -1, 1, 1), torch.tensor(pre["std"]).view(1, -1, 1, 1)
    bf16 = str(run["trainer"].get("precision")).startswith("bf16")
    # A CPU without native bf16 (no AVX-512 BF16/AMX) emulates it: the card's bf16 pass over 10,000 images took
    # over 20 min on one such machine. There the weights are checked in float32, within half a point of the card.
    exact = not bf16 or bf16_is_native("cpu")
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16 and exact):
        pred = torch.cat([tta_logits(model, (x[i : i + 1000].float() / 255 - mean) / std,
                                     level=int(run["task"].get("tta") or 0)).argmax(-1)
                          for i in range(0, len(x), 1000)])
    correct, card = int((pred == y).sum()), round(config["metrics"]["test/acc"] * len(y))
    assert correct == card if exact else abs(correct - card) <= 0.005 * len(y), (correct, card, exact)


def test_a_model_without_shipped_weights_says_which_have_them():
    with pytest.raises(zoo.ZooError, match="no shipped weights for 'alexnet'"):
        zoo.create_model("alexnet", pretrained="cifar10")


def test_zoo_predict_reads_mnist_pngs_with_the_shipped_lenet5(tmp_path, data_dir, capsys):
    from PIL import Image

    x, y = _mnist_test(data_dir)
    paths = []
    for i in (0, 1, 2):  # the digits 7, 2, 1
        paths.append(str(tmp_path / f"digit{i}.png"))
        Image.fromarray(x[i, 0].numpy()).save(paths[-1])
    out = tmp_path / "pred.csv"
    assert zoo_main(["predict", str(SHIPPED), *paths, "--top-k", "3", "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert [r["class_1"] for r in rows] == [str(int(d)) for d in y[:3]]
    assert all(float(r["prob_1"]) > 0.5 > float(r["prob_2"]) for r in rows)
    assert f"{paths[0]}: {int(y[0])} (" in capsys.readouterr().out

    not_image = tmp_path / "notes.png"
    not_image.write_text("not pixels")
    assert zoo_main(["predict", str(SHIPPED), str(not_image)]) == 2
    assert "is not an image file" in capsys.readouterr().err
    assert zoo_main(["predict", str(tmp_path / "missing"), paths[0]]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_from_pretrained_errors(tmp_path):
    with pytest.raises(zoo.ZooError, match="no such folder"):
        zoo.from_pretrained(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(zoo.ZooError, match="not a pretrained model folder: config.json, model.safetensors missing"):
        zoo.from_pretrained(tmp_path / "empty")
    edited = shutil.copytree(SHIPPED, tmp_path / "edited")
    data = bytearray((edited / "model.safetensors").read_bytes())
    data[-1] ^= 1
    (edited / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(zoo.ZooError, match="does not match the sha256"):
        zoo.from_pretrained(edited)


def test_train_false_reproduces_the_runs_test_metric_and_export_run(compose_cfg, tmp_path):
    from tasks.runner import run

    trained = run(compose_cfg(*fast_overrides("trainer.limit_train_batches=5", "trainer.limit_test_batches=2")))
    best = trained["best_checkpoint"]
    model = zoo.load_model(best)  # the data's input contract travelled with the checkpoint
    assert model.zoo_preprocessing["classes"] == [str(d) for d in range(10)]
    assert model.zoo_preprocessing["mean"] == [0.1307] and model.zoo_preprocessing["img_size"] == 28
    evaluated = run(compose_cfg(*fast_overrides("trainer.limit_test_batches=2", "train=false", f"ckpt_path={best}")))
    assert evaluated["test/acc"] == trained["test/acc"] and evaluated["steps"] == 0
    assert json.loads((tmp_path / "metrics.json").read_text())["test/acc"] == trained["test/acc"]

    exported = zoo.pretrained.export_run(tmp_path, tmp_path / "exported")
    config = json.loads((exported / "config.json").read_text())
    assert config["metrics"]["test/acc"] == trained["test/acc"] and config["preprocessing"]["in_chans"] == 1
    loaded = zoo.from_pretrained(exported)
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())


def test_hubconf_builds_zoo_models():
    model = torch.hub.load(str(ROOT), "resnet20", source="local", pretrained=False, num_classes=7)
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 7)
    shipped = torch.hub.load(str(ROOT), "lenet5", source="local", pretrained="mnist")
    assert shipped.zoo_name == "lenet5" and not shipped.training


def test_saved_tokenizers_encode_as_the_data_modules_do(tmp_path):
    from tasks.data.tokenize import CharTokenizer, tokenizer_record, train_tokenizer
    from zoo.preprocess import load_tokenizer

    texts = ["Ein Mann fährt Fahrrad.", "A man rides a bike.", "Zwei Hunde spielen im Schnee."] * 20
    bpe = train_tokenizer(texts, name="tiny", vocab_size=60, cache_dir=str(tmp_path))
    chars = CharTokenizer.fit("".join(texts))
    for tok, encode in ((bpe, lambda t: bpe.encode(t).ids), (chars, lambda t: chars.encode_text(t).tolist())):
        saved = load_tokenizer({"kind": "text", "tokenizer": json.loads(json.dumps(tokenizer_record(tok)))})
        ids = saved.encode("Ein Mann spielen im Schnee.")
        assert ids == encode("Ein Mann spielen im Schnee.") and saved.decode(ids) == "Ein Mann spielen im Schnee."
    with pytest.raises(zoo.ZooError, match="not in the model's vocabulary"):
        load_tokenizer({"tokenizer": tokenizer_record(chars)}).encode("Q!")


def test_init_from_reads_folders_and_shipped_weights_and_resets_the_head_on_request(tmp_path):
    from zoo.checkpoint import CheckpointError, head_keys, load_matching
    from zoo.pretrained import read_weights

    shipped = zoo.create_model("lenet5", pretrained="mnist")
    theirs = shipped.state_dict()
    head = head_keys(shipped)
    assert head and head < set(theirs)
    for source in ("pretrained:mnist", str(SHIPPED)):  # the package's weights, by name and as a folder
        ckpt = read_weights(source, model="lenet5")
        assert ckpt["zoo"]["preprocessing"] == shipped.zoo_preprocessing  # the input contract travels along
        torch.manual_seed(0)
        model = zoo.create_model("lenet5", num_classes=10)
        built = {k: v.clone() for k, v in model.state_dict().items()}
        report = load_matching(model, ckpt, source=source)  # same classes: everything loads, head included
        assert not report.fresh and all(torch.equal(v, theirs[k]) for k, v in model.state_dict().items())
        torch.manual_seed(0)
        model = zoo.create_model("lenet5", num_classes=10)
        report = load_matching(model, ckpt, source=source, reset_head=True)
        assert set(report.fresh) == head and set(report.loaded) == set(theirs) - head
        for k, v in model.state_dict().items():
            assert torch.equal(v, built[k] if k in head else theirs[k]), k
    five = zoo.create_model("lenet5", num_classes=5)  # another class count: a new head without asking
    assert set(load_matching(five, read_weights("pretrained:mnist", model="lenet5")).fresh) == head
    with pytest.raises(zoo.ZooError, match="no shipped weights for 'lenet5' trained on 'svhn'"):
        read_weights("pretrained:svhn", model="lenet5")
    with pytest.raises(zoo.ZooError, match="not a Hugging Face Hub id"):
        read_weights(tmp_path / "nothing-here")
    headless = torch.nn.Sequential(torch.nn.Linear(2, 2))
    with pytest.raises(CheckpointError, match="names no head to reset"):
        load_matching(headless, {"zoo": {"model": "mlp", "kwargs": {}, "prefix": ""},
                                 "state_dict": headless.state_dict()}, reset_head=True)


def test_fine_tuning_the_shipped_mnist_lenet5_on_fashion_mnist(compose_cfg, tmp_path, data_dir):
    from tasks.runner import run
    from zoo.checkpoint import head_keys

    cfg = compose_cfg("data=fashion_mnist", "model=lenet5", "init_from=pretrained:mnist", "reset_head=true",
                      *fast_overrides())
    metrics = run(cfg)
    report = json.loads((tmp_path / "init_from.json").read_text())
    assert report["source"] == "pretrained:mnist" and report["source_model"] == "lenet5"
    head = head_keys(zoo.create_model("lenet5"))
    assert set(report["fresh"]) == head and set(report["loaded"]) == set(zoo.create_model("lenet5").state_dict()) - head
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["init_from"] == "pretrained:mnist" and saved["reset_head"] is True
    assert 0 <= metrics["test/acc"] <= 1
