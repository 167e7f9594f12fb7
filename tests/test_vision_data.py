"""Real image data: layouts, splits, integrity checks, the whole-batch loader and batch augmentation."""

import gzip
import shutil

import pytest
import torch

from tasks.data import DataError, TensorBatchLoader, VisionDataModule
from tasks.data.augment import random_crop_flip
from tasks.data.vision import load_arrays


def test_mnist_reads_the_gz_files_without_writing(data_dir):
    before = sorted(p.name for p in (data_dir / "MNIST" / "raw").iterdir())
    x, y = load_arrays("mnist", str(data_dir), True, False, "checksums.sha256")
    assert x.shape == (60000, 1, 28, 28) and x.dtype == torch.uint8
    # class counts published with the data (README of the data root)
    assert torch.bincount(y).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert sorted(p.name for p in (data_dir / "MNIST" / "raw").iterdir()) == before


def test_cifar10_local_rebuild_is_verified_by_the_manifest(data_dir):
    x, y = load_arrays("cifar10", str(data_dir), False, False, "checksums.sha256")
    assert x.shape == (10000, 3, 32, 32)
    assert y[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    assert x[0, 0, 0, :3].tolist() == [158, 159, 165]  # first test image starts 158, 159, 165 (data README)


def test_cifar10_without_manifest_keeps_torchvisions_md5_check(data_dir):
    with pytest.raises(DataError, match=r"checksum mismatch: .*data_batch_1 has md5"):
        load_arrays("cifar10", str(data_dir), True, False, None)


def test_truncated_file_is_named(tmp_path, data_dir):
    raw = tmp_path / "MNIST" / "raw"
    shutil.copytree(data_dir / "MNIST" / "raw", raw)
    (tmp_path / "checksums.sha256").write_text("")  # no manifest entries: upstream md5 applies
    p = raw / "t10k-labels-idx1-ubyte.gz"
    p.write_bytes(p.read_bytes()[:-100])
    with pytest.raises(DataError, match="checksum mismatch: .*t10k-labels-idx1-ubyte.gz"):
        load_arrays("mnist", str(tmp_path), False, False, "checksums.sha256")


def test_missing_root_names_files_and_the_env_var(tmp_path):
    dm = VisionDataModule(dataset="fashion_mnist", root=str(tmp_path / "nowhere"), download=False)
    with pytest.raises(DataError) as err:
        dm.prepare_data()
    msg = str(err.value)
    assert "train-images-idx3-ubyte.gz" in msg and "ZOO_DATA_DIR" in msg and "data.download=true" in msg


def test_the_data_module_states_the_facts_the_model_is_built_with():
    assert VisionDataModule(dataset="mnist", root=".").facts() == {"num_classes": 10, "in_chans": 1, "img_size": 28}
    assert VisionDataModule(dataset="cifar100", root=".").facts() == {"num_classes": 100, "in_chans": 3,
                                                                      "img_size": 32}


def test_validation_split_is_seeded_and_disjoint(data_dir):
    def split(seed):
        dm = VisionDataModule(dataset="mnist", root=str(data_dir), val_size=5000, split_seed=seed)
        dm.setup("fit")
        return dm

    a, b, c = split(0), split(0), split(1)
    assert len(a.train_set[0]) == 55000 and len(a.val_set[0]) == 5000
    assert torch.equal(a.val_set[0], b.val_set[0])
    assert not torch.equal(a.val_set[0], c.val_set[0])
    # no validation image also sits in the training split (hash rows to compare)
    h = lambda x: set(map(hash, map(bytes, x.flatten(1).numpy())))  # noqa: E731
    assert not h(a.val_set[0][:500]) & h(a.train_set[0])


def test_loader_resumes_mid_epoch_with_the_same_batches():
    data = torch.arange(100)
    full = TensorBatchLoader(data, batch_size=10, shuffle=True, seed=3)
    first_epoch = [b[0] for b in full]
    second_epoch = [b[0] for b in full]
    assert not torch.equal(torch.cat(first_epoch), torch.cat(second_epoch))  # reshuffled per epoch

    part = TensorBatchLoader(data, batch_size=10, shuffle=True, seed=3)
    it = iter(part)
    seen = [next(it)[0] for _ in range(4)]
    state = part.state_dict()
    resumed = TensorBatchLoader(data, batch_size=10, shuffle=True, seed=3)
    resumed.load_state_dict(state)
    rest = [b[0] for b in resumed]
    assert all(torch.equal(a, b) for a, b in zip(seen + rest, first_epoch, strict=True))
    assert torch.equal(torch.cat([b[0] for b in resumed]), torch.cat(second_epoch))


def test_loader_shards_across_ranks():
    data = torch.arange(103)
    shards = [torch.cat([b[0] for b in TensorBatchLoader(data, batch_size=8, shuffle=True, rank=r, world_size=2)])
              for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == 51
    assert not set(shards[0].tolist()) & set(shards[1].tolist())


def test_crop_flip_keeps_shape_and_content():
    torch.manual_seed(0)
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float).view(2, 3, 8, 8)
    y = random_crop_flip(x, padding=0)  # flips only
    for i in range(2):
        assert torch.equal(y[i], x[i]) or torch.equal(y[i], x[i].flip(-1))
    z = random_crop_flip(x, padding=2, flip=False)
    assert z.shape == x.shape
    # every crop is a shifted window: its non-zero values appear in the original image in order
    for i in range(2):
        vals = z[i][z[i] != 0]
        assert torch.isin(vals, x[i]).all()


def test_gz_reader_rejects_non_idx(tmp_path):
    from tasks.data.vision import _read_idx_gz

    p = tmp_path / "bad.gz"
    p.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + b"\x00" * 10))
    with pytest.raises(DataError, match="not an idx file"):
        _read_idx_gz(p, 2051)
