"""Spoken digits (FSDD) as log-mel spectrograms held in memory; SpecAugment masking runs on whole batches.

Features are computed once (``torchaudio``'s ``MelSpectrogram``; the WAVs are read with the standard library's
``wave``) and cached under ``<cache_dir>/speech/``, keyed by a digest of the recordings and the feature
settings. Every recording is right-padded with silence (or centre-cropped) to ``frames`` frames.

Batch format, chosen by ``layout`` (default: from the model that trains, see :func:`zoo.audio.layout_for`):

- ``image``: ``(x (B, 1, n_mels, frames), y (B,))``, the spectrogram as a one-channel picture (CNNs);
- ``sequence``: ``((x (B, frames, n_mels), padding_mask (B, frames)), y (B,))``, one vector per frame and the
  padded frames marked True, the format of the text classifiers' ``(tokens, padding_mask)`` batches
  (Transformer encoder, LSTM).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import socket
import tarfile
import tempfile
import urllib.request
from pathlib import Path
from typing import Any, NamedTuple

import lightning as L
import torch
from safetensors.torch import load_file, save

from tasks.data.fetch import DOWNLOAD_TIMEOUT_S
from tasks.data.integrity import MANIFEST_HELP, DataError, file_digest, verify_file
from tasks.data.loader import TensorBatchLoader, data_device, rank_world, training_position
from tasks.data.tokenize import cache_root
from zoo import audio
from zoo.io import cached

log = logging.getLogger(__name__)

# Free Spoken Digit Dataset v1.0.10 (Jackson et al.; CC BY-SA 4.0): 6 speakers x 10 digits x 50 takes, 8 kHz mono
FSDD_DIR = "fsdd/recordings"
FSDD_SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")
FSDD_TAKES = 50
FSDD_TEST_TAKES = range(5)  # the official split (upstream README): takes 0-4 test, 5-49 train
FSDD_RATE = 8000
FSDD_URL = "https://github.com/Jakobovski/free-spoken-digit-dataset/archive/refs/tags/v1.0.10.tar.gz"
# sha256 of the sorted "<sha256>  fsdd/recordings/<name>" lines of all 3000 recordings (sha256sum's format)
FSDD_DIGEST = "8f12bbbd51d141d7b73139fc9ba83cf9aaea4b7a385284e7710430761b28b673"
NAME = re.compile(r"(\d)_([a-z]+)_(\d+)\.wav")


class Recording(NamedTuple):
    """One file of FSDD: ``{digit}_{speaker}_{take}.wav``."""

    rel: str
    digit: int
    speaker: str
    take: int


def fsdd_recordings() -> list[Recording]:
    """Every recording of FSDD v1.0.10, sorted by file name."""
    names = [f"{d}_{s}_{t}.wav" for d in range(10) for s in FSDD_SPEAKERS for t in range(FSDD_TAKES)]
    return [parse_name(n) for n in sorted(names)]


def parse_name(name: str) -> Recording:
    m = NAME.fullmatch(name)
    if m is None:
        raise DataError(f"{name!r} is not an FSDD file name ({{digit}}_{{speaker}}_{{take}}.wav, e.g. 7_jackson_32.wav)")
    return Recording(f"{FSDD_DIR}/{name}", int(m[1]), m[2], int(m[3]))


def read_wav(path: Path, *, sample_rate: int = FSDD_RATE) -> torch.Tensor:
    """A mono 16-bit PCM WAV at ``sample_rate`` as a float tensor (samples,) in [-1, 1) (:func:`zoo.audio.read_wav`);
    a file in another format is a DataError naming the command that converts it."""
    return audio.read_wav(path, sample_rate=sample_rate, error=DataError)


def recordings_digest(root: Path, recordings: list[Recording]) -> str:
    """sha256 of the recordings' sha256 lines (``sha256sum`` format, sorted by path): one digest for the set."""
    lines = [f"{file_digest(root / r.rel, 'sha256')}  {r.rel}\n" for r in sorted(recordings, key=lambda r: r.rel)]
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def _download_fsdd(root: Path, missing: list[Recording]) -> None:
    """Fetch the v1.0.10 release archive and extract the missing recordings from its ``recordings/`` folder."""
    dest = root / FSDD_DIR
    dest.mkdir(parents=True, exist_ok=True)
    wanted = {Path(r.rel).name for r in missing}
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
            urllib.request.urlretrieve(FSDD_URL, Path(tmp) / "fsdd.tar.gz")  # follows GitHub's redirect
            with tarfile.open(Path(tmp) / "fsdd.tar.gz") as tar:
                for member in tar.getmembers():
                    name = Path(member.name)
                    if member.isfile() and name.parent.name == "recordings" and name.name in wanted:
                        src = tar.extractfile(member)
                        (dest / name.name).write_bytes(src.read())
    finally:
        socket.setdefaulttimeout(old)


def ensure_fsdd(root: Path, *, download: bool, manifest: str | None) -> str:
    """All 3000 recordings present (downloaded when allowed) and verified; returns their :func:`recordings_digest`.

    Each file is checked against the data root's sha256 manifest where it lists it, and the whole set against
    :data:`FSDD_DIGEST`, so a copy without a manifest (a fresh download) is verified too.
    """
    recordings = fsdd_recordings()
    missing = [r for r in recordings if not (root / r.rel).is_file()]
    if missing and download:
        try:
            _download_fsdd(root, missing)
        except Exception as e:  # network errors come in many types
            log.warning("fsdd: download of %s failed: %s", FSDD_URL, e)
        missing = [r for r in recordings if not (root / r.rel).is_file()]
    if missing:
        why = "download is off (data.download=false)" if not download else f"downloading {FSDD_URL} failed (offline?)"
        raise DataError(f"fsdd: {len(missing)} of {len(recordings)} recordings are missing under {root / FSDD_DIR} "
                        f"(e.g. {Path(missing[0].rel).name}) and {why}. To fix: {MANIFEST_HELP}.")
    for r in recordings:
        verify_file(root, r.rel, md5=None, manifest=manifest)
    digest = recordings_digest(root, recordings)
    if digest != FSDD_DIGEST:
        raise DataError(f"fsdd: the recordings under {root / FSDD_DIR} are not those of FSDD v1.0.10 (their combined "
                        f"sha256 is {digest}, expected {FSDD_DIGEST}). Replace the folder with the release's "
                        f"recordings/ ({FSDD_URL}), or delete it and run with data.download=true.")
    return digest


def fsdd_features(root: Path, recordings: list[Recording], *, n_mels: int, frames: int, n_fft: int,
                  hop_length: int) -> dict[str, torch.Tensor]:
    """Log-mels (N, n_mels, frames) of ``recordings``, their real frame counts (N,), digits (N,) and takes (N,).

    Each waveform is right-padded with zeros, or centre-cropped, to ``(frames - 1) * hop_length`` samples: with
    centred STFT windows that is exactly ``frames`` frames. A frame is real when its centre lies in the recording.
    """
    fitted = [audio.fit_frames(read_wav(root / r.rel), frames=frames, hop_length=hop_length) for r in recordings]
    waves, lengths = torch.stack([w for w, _ in fitted]), torch.tensor([n for _, n in fitted])
    return {"features": audio.log_mel(waves, sample_rate=FSDD_RATE, n_mels=n_mels, n_fft=n_fft, hop_length=hop_length),
            "lengths": lengths, "digits": torch.tensor([r.digit for r in recordings]),
            "takes": torch.tensor([r.take for r in recordings])}


def split_by_take(takes: torch.Tensor, *, val_size: int, split_seed: int) -> dict[str, torch.Tensor]:
    """Indices of the official split (takes 0-4: test) with ``val_size`` training files held out for validation."""
    test = (takes < len(FSDD_TEST_TAKES)).nonzero().flatten()
    pool = (takes >= len(FSDD_TEST_TAKES)).nonzero().flatten()
    if not 0 <= val_size < len(pool):
        raise DataError(f"data.val_size={val_size} must be in [0, {len(pool)}) (the training files)")
    perm = pool[torch.randperm(len(pool), generator=torch.Generator().manual_seed(split_seed))]
    return {"train": perm[val_size:].sort().values, "val": perm[:val_size].sort().values, "test": test}


class SpeechDataModule(L.LightningDataModule):
    """FSDD spoken digits: log-mel spectrograms in memory, standardised per mel band with training statistics.

    The official split (takes 0-4 of every speaker and digit: 300 test files; takes 5-49: 2700 training files),
    ``val_size`` training files held out with ``split_seed``. Features: ``n_mels`` mel bands of ``n_fft``-sample
    windows every ``hop_length`` samples (32 ms every 16 ms by default), ``frames`` frames (64: 1.01 s; 99.3% of
    the recordings are shorter). Padded frames are zero after standardisation (the training mean).

    Training batches get SpecAugment's masks (Park et al. 2019) on the batch's device: ``freq_masks`` bands of up
    to ``freq_mask`` mel channels and ``time_masks`` spans of up to ``time_mask`` frames per spectrogram, each
    set to zero. ``layout``: ``image`` or ``sequence`` (module docstring); null picks it from the model being
    trained (:func:`zoo.audio.layout_for`). ``on_device``: as :class:`~tasks.data.vision.VisionDataModule`'s.
    """

    on_device: bool | None = None

    def __init__(
        self,
        *,
        root: str,
        dataset: str = "fsdd",
        cache_dir: str | None = None,
        n_mels: int = 40,
        frames: int = 64,
        n_fft: int = 256,
        hop_length: int = 128,
        batch_size: int = 64,
        eval_batch_size: int = 500,
        val_size: int = 300,
        split_seed: int = 0,
        seed: int = 0,
        layout: str | None = None,
        freq_masks: int = 2,
        freq_mask: int = 8,
        time_masks: int = 2,
        time_mask: int = 10,
        download: bool = True,
        manifest: str | None = "checksums.sha256",
        meta: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if dataset != "fsdd":
            raise DataError(f"unknown speech dataset {dataset!r}; choose 'fsdd'")
        if layout not in (None, *audio.LAYOUTS):
            raise DataError(f"data.layout={layout!r}; choose image (B, 1, n_mels, frames), sequence "
                            "(B, frames, n_mels) or null (from the model)")
        if min(n_mels, frames, n_fft, hop_length) < 1 or min(freq_masks, freq_mask, time_masks, time_mask) < 0:
            raise DataError("data.n_mels, frames, n_fft and hop_length must be positive, the mask counts and widths "
                            "0 or more")
        self.dataset, self.root, self.cache_dir = dataset, Path(root).expanduser(), cache_dir
        self.n_mels, self.frames, self.n_fft, self.hop_length = n_mels, frames, n_fft, hop_length
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.val_size, self.split_seed, self.seed, self.layout = val_size, split_seed, seed, layout
        self.freq_masks, self.freq_mask, self.time_masks, self.time_mask = freq_masks, freq_mask, time_masks, time_mask
        self.download, self.manifest = download, manifest
        self.meta = dict(meta or {})
        self.num_classes = 10
        self.features: torch.Tensor | None = None

    def facts(self) -> dict[str, Any]:
        """Ten digits; a spectrogram is a one-channel (n_mels, frames) image or ``frames`` vectors of ``n_mels``."""
        return {"num_classes": self.num_classes, "in_chans": 1, "img_size": (self.n_mels, self.frames),
                "in_features": self.n_mels, "max_len": self.frames, "seq_len": self.frames}

    def preprocessing(self) -> dict[str, Any]:
        """The input contract a trained model carries: zoo.audio turns WAV files into its input with it."""
        self.setup()  # the standardisation statistics come from the training split
        return {"kind": "speech", "sample_rate": FSDD_RATE, "n_mels": self.n_mels, "n_fft": self.n_fft,
                "hop_length": self.hop_length, "frames": self.frames, "mean": self.mean.tolist(),
                "std": self.std.tolist(), "classes": [str(d) for d in range(self.num_classes)]}

    def prepare_data(self) -> None:
        ensure_fsdd(self.root, download=self.download, manifest=self.manifest)

    def _cached_features(self) -> dict[str, torch.Tensor]:
        digest = ensure_fsdd(self.root, download=self.download, manifest=self.manifest)
        settings = {"n_mels": self.n_mels, "frames": self.frames, "n_fft": self.n_fft, "hop_length": self.hop_length}
        key = hashlib.sha256(json.dumps({"recordings": digest, "log_floor": audio.LOG_FLOOR, **settings},
                                        sort_keys=True).encode()).hexdigest()[:16]
        path = cache_root(self.cache_dir) / "speech" / f"fsdd-logmel{self.n_mels}x{self.frames}-{key}.safetensors"
        return cached(path, read=load_file, build=lambda: fsdd_features(self.root, fsdd_recordings(), **settings),
                      write=lambda value, f: f.write(save(value)))  # safetensors: tensors only, nothing unpickled

    def setup(self, stage: str | None = None) -> None:
        if self.features is not None:
            return
        data = self._cached_features()
        feats, lengths = data["features"], data["lengths"]
        self.split = split_by_take(data["takes"], val_size=self.val_size, split_seed=self.split_seed)
        real = torch.arange(self.frames) < lengths[:, None]  # (N, frames): True at frames of the recording
        train_frames = feats[self.split["train"]].transpose(1, 2)[real[self.split["train"]]]  # (frames, n_mels)
        self.mean, self.std = train_frames.mean(0), train_frames.std(0)  # per mel band, training frames only
        self.features = audio.standardise(feats, lengths, self.mean, self.std)  # (N, n_mels, frames)
        self.lengths, self.labels, self.takes = lengths, data["digits"], data["takes"]

    def _tensors(self, name: str) -> tuple[torch.Tensor, ...]:
        idx = self.split[name]
        return self.features[idx], self.lengths[idx], self.labels[idx]

    def _loader(self, name: str) -> TensorBatchLoader:
        rank, world = rank_world(self.trainer)
        device = data_device(self.trainer, on_device=self.on_device)
        if name == "train":
            return TensorBatchLoader(*self._tensors(name), batch_size=self.batch_size, shuffle=True, drop_last=True,
                                     seed=self.seed, rank=rank, world_size=world,
                                     position=lambda: training_position(self.trainer), device=device)
        return TensorBatchLoader(*self._tensors(name), batch_size=self.eval_batch_size, rank=rank, world_size=world,
                                 device=device)

    def train_dataloader(self) -> TensorBatchLoader:
        return self._loader("train")

    def val_dataloader(self) -> TensorBatchLoader:
        return self._loader("val")

    def test_dataloader(self) -> TensorBatchLoader:
        return self._loader("test")

    def batch_layout(self) -> str:
        """``layout``, or the one the model being trained takes."""
        if self.layout is not None:
            return self.layout
        module = self.trainer.lightning_module if self.trainer is not None else None
        return audio.layout_for(getattr(module, "model_name", None))

    def spec_augment(self, x: torch.Tensor) -> torch.Tensor:
        """SpecAugment's frequency and time masks on (B, n_mels, frames), drawn per spectrogram on x's device."""
        from torchaudio.functional import mask_along_axis_iid

        for _ in range(self.freq_masks if self.freq_mask else 0):
            x = mask_along_axis_iid(x, self.freq_mask, 0.0, axis=1)
        for _ in range(self.time_masks if self.time_mask else 0):
            x = mask_along_axis_iid(x, self.time_mask, 0.0, axis=2)
        return x

    def to_batch(self, x: torch.Tensor, lengths: torch.Tensor, *, train: bool, layout: str) -> Any:
        """Stored (B, n_mels, frames) features -> the model's input in ``layout``, masked when ``train``."""
        return audio.to_model_input(self.spec_augment(x) if train else x, lengths, layout)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        x, lengths, y = batch
        training = self.trainer is not None and self.trainer.training
        return self.to_batch(x, lengths, train=training, layout=self.batch_layout()), y
