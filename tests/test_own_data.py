"""Your own data: an ImageFolder of images (data=image_folder) and a plain-text file (data=text_file), on small
folders and files these tests write themselves."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate

from tasks.data import DataError
from tasks.runner import run
from tests.conftest import fast_overrides

COLOURS = {"blue": (20, 40, 220), "red": (220, 30, 20), "green": (30, 200, 40)}


pytestmark = pytest.mark.usefixtures("one_thread")  # small models: one thread is faster


def _image_folder(root, classes=("blue", "red"), per_class=12, size=(24, 18)):
    """``root/<class>/<i>.png``: noisy images of one colour per class, wider than tall (cropped to a square)."""
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            noise = torch.randint(-20, 21, (size[1], size[0], 3), generator=g)
            pixels = (torch.tensor(COLOURS[name]) + noise).clamp(0, 255).to(torch.uint8)
            Image.fromarray(pixels.numpy()).save(root / name / f"{i}.png")
    (root / "blue" / "notes.txt").write_text("not an image: skipped")
    return root


def test_image_folder_is_read_once_resized_split_and_trains(compose_cfg, tmp_path):
    folder = _image_folder(tmp_path / "images")
    cfg = compose_cfg("data=image_folder", f"data.path={folder}", "data.img_size=16", "data.val_size=4",
                      "data.test_size=0.25", *fast_overrides("trainer.limit_train_batches=2", "data.batch_size=8",
                                                             "logger=none", "threads=1"))
    assert cfg.model.name == "resnet20"  # model=auto: the decision tree's CNN for small images
    dm = instantiate(cfg.data, _convert_="all")
    assert dm.facts() == {"num_classes": 2, "in_chans": 3, "img_size": 16}
    assert dm.classes == ["blue", "red"]
    dm.setup("fit")
    x, y = dm.train_set
    assert x.dtype == torch.uint8 and x.shape[1:] == (3, 16, 16)  # resized once, held as uint8
    assert (len(dm.test_set[0]), len(dm.val_set[0]), len(x)) == (6, 4, 14)  # 24 images: a quarter, 4, the rest
    all_x = torch.cat([x, dm.val_set[0], dm.test_set[0]])
    assert len({tuple(t.flatten().tolist()) for t in all_x}) == 24  # a partition: no image twice
    blue = x[y == 0].float().mean((0, 2, 3))
    assert blue[2] > 150 and blue[0] < 60  # labels follow the sorted folder names
    assert dm.spec.mean[2] == pytest.approx(x.float().div(255).mean((0, 2, 3))[2].item(), abs=1e-4)  # train stats
    metrics = run(cfg)
    assert metrics["model"] == "resnet20" and 0 <= metrics["test/acc"] <= 1


def test_image_folder_test_path_and_clear_errors(compose_cfg, tmp_path):
    from tasks.data import ImageFolderDataModule
    from tasks.validate import ConfigError

    for data in ("image_folder", "text_file"):  # the path is the user's to give: one line saying so
        with pytest.raises(ConfigError, match="^data.path must be set for data=.*: add data.path=..."):
            run(compose_cfg(f"data={data}", resolve=False, return_hydra_config=True))

    train = _image_folder(tmp_path / "train")
    test = _image_folder(tmp_path / "test", per_class=3)
    dm = ImageFolderDataModule(path=str(train), test_path=str(test), img_size=8, channels=1, val_size=0.25)
    dm.setup("fit")
    assert dm.test_set[0].shape == (6, 1, 8, 8) and len(dm.val_set[0]) == 6 and len(dm.train_set[0]) == 18
    _image_folder(tmp_path / "one", classes=("blue",))
    with pytest.raises(DataError, match="1 class folder"):
        ImageFolderDataModule(path=str(tmp_path / "one"))
    with pytest.raises(DataError, match="is not a folder"):
        ImageFolderDataModule(path=str(tmp_path / "nowhere"))
    three = _image_folder(tmp_path / "three", classes=("blue", "red", "green"), per_class=2)
    with pytest.raises(DataError, match="no class folder 'green'"):
        ImageFolderDataModule(path=str(three), test_path=str(test), img_size=8).setup("fit")


TEXT = "".join(f"Line {i}: the quick brown fox jumps over the lazy dog, {i % 7} times.\n" for i in range(120))


def test_text_file_trains_a_character_language_model(compose_cfg, tmp_path):
    path = tmp_path / "book.txt"
    path.write_text(TEXT + "Zebra ~ at the very end.\n", encoding="utf-8")
    assert compose_cfg("data=text_file", f"data.path={path}").model.name == "gpt"  # model=auto: the tree's LM
    cfg = compose_cfg("data=text_file", f"data.path={path}", "model=gpt", "data.block_size=32", "data.batch_size=4",
                      "model.dim=32", "model.depth=1", "task.sample_tokens=20",
                      *fast_overrides("logger=none", "threads=1"))
    metrics = run(cfg)
    assert metrics["test/ppl"] > 1 and metrics["test/bpc"] > 0
    dm = instantiate(cfg.data, _convert_="all")
    dm.setup("fit")
    assert "Z" in dm.tokenizer.chars and "~" in dm.tokenizer.chars  # characters of the last 5% have ids too
    assert dm.decode(dm.encode("the lazy dog").tolist()) == "the lazy dog"
    assert (tmp_path / "samples.txt").is_file()


def test_text_file_with_bpe_pieces_and_clear_errors(tmp_path):
    from tasks.data import CharLMDataModule

    path = tmp_path / "book.txt"
    path.write_text(TEXT, encoding="utf-8")
    dm = CharLMDataModule(root=str(tmp_path), dataset="text_file", path=str(path), tokenizer="bpe",
                          tokenizer_vocab_size=120, block_size=16, cache_dir=str(tmp_path / "cache"))
    dm.setup("fit")
    assert not dm.char_level and dm.vocab_size <= 120
    assert len(dm.train_ids) < 0.6 * len(TEXT) * 0.9  # pieces, not characters
    assert dm.decode(dm.encode("the quick brown fox").tolist()).strip() == "the quick brown fox"
    with pytest.raises(DataError, match="no such file"):
        CharLMDataModule(root=str(tmp_path), dataset="text_file", path=str(tmp_path / "missing.txt")).setup()
    with pytest.raises(DataError, match="smaller data.block_size"):
        CharLMDataModule(root=str(tmp_path), dataset="text_file", path=str(path), block_size=1000).setup()
