"""Where the text datasets come from: remote files with their checksums, and readers for their formats."""

from __future__ import annotations

import csv
from pathlib import Path

from tasks.data.fetch import Remote
from tasks.data.integrity import DataError

GH = "https://raw.githubusercontent.com"
SHAKESPEARE = Remote("tiny_shakespeare/input.txt", "6fb458f1232090904fb40fe944165e91",
                     f"{GH}/karpathy/char-rnn/master/data/tinyshakespeare/input.txt")
SST2_ZIP = "https://dl.fbaipublicfiles.com/glue/data/SST-2.zip"
SST2_ZIP_MD5 = "9f81648d4199384278b86e315dac217c"
CLASSIFICATION_FILES = {
    "sst2": {
        "train": Remote("sst2/train.tsv", "da409a0a939379ed32a470bc0f7fe99a", SST2_ZIP, "SST-2/train.tsv", SST2_ZIP_MD5),
        "test": Remote("sst2/dev.tsv", "268856b487b2a31a28c0a93daaff7288", SST2_ZIP, "SST-2/dev.tsv", SST2_ZIP_MD5),
    },
    "ag_news": {
        "train": Remote("ag_news/train.csv", "b1a00f826fdfbd249f79597b59e1dc12",
                        f"{GH}/mhjabreel/CharCnn_Keras/master/data/ag_news_csv/train.csv"),
        "test": Remote("ag_news/test.csv", "d52ea96a97a2d943681189a97654912d",
                       f"{GH}/mhjabreel/CharCnn_Keras/master/data/ag_news_csv/test.csv"),
    },
}
NUM_CLASSES = {"sst2": 2, "ag_news": 4}
CLASS_NAMES = {"sst2": ("negative", "positive"), "ag_news": ("World", "Sports", "Business", "Sci/Tech")}
MULTI30K_MD5 = {
    "train.de": "d3b4bc1671cfb805267f97f16884beba", "train.en": "053a34ece7c904dbc8c7361799afbe4c",
    "val.de": "9f139b15d9d11936dea7af2904e57d8c", "val.en": "2234730e7925354b766681b029b347ec",
    "test_2016_flickr.de": "cde61d7401b116652ee84099c7858ca3",
    "test_2016_flickr.en": "2022a6c31e2418047a0511333d55ed42",
}
MULTI30K_SPLITS = {"train": "train", "val": "val", "test": "test_2016_flickr"}


def multi30k_file(name: str) -> Remote:
    # upstream serves gzip files; the data root keeps them decompressed (verified by the plain file's md5)
    return Remote(f"multi30k/{name}", MULTI30K_MD5[name],
                  f"{GH}/multi30k/dataset/master/data/task1/raw/{name}.gz")


def read_sst2(path: Path) -> tuple[list[str], list[int]]:
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    if not rows or rows[0] != ["sentence", "label"]:
        raise DataError(f"{path}: expected a header 'sentence<TAB>label' (GLUE SST-2 format)")
    return [r[0] for r in rows[1:]], [int(r[1]) for r in rows[1:]]


def read_ag_news(path: Path) -> tuple[list[str], list[int]]:
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    texts = [f"{title} {desc}".replace("\\n", " ").replace("\\", " ") for _, title, desc in rows]
    return texts, [int(r[0]) - 1 for r in rows]  # classes 1-4 -> 0-3


READERS = {"sst2": read_sst2, "ag_news": read_ag_news}
