"""Speech (FSDD): WAV reading, the official split, the log-mel features, SpecAugment on training batches only,
the batch layout each model takes, and a short run of the Transformer, the CNN and the LSTM on the real data."""

from __future__ import annotations

import json
import wave
from types import SimpleNamespace

import pytest
import torch

import zoo
from tasks.data import DataError, SpeechDataModule
from tasks.data.speech import FSDD_DIGEST, fsdd_recordings, read_wav, recordings_digest
from tasks.runner import model_config, run
from tests.conftest import SMALL_DATA, SMALL_MODEL, fast_overrides
from zoo.audio import layout_for
from zoo.predict import classify


def _write_wav(path, samples: torch.Tensor, *, rate: int = 8000, channels: int = 1) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.to(torch.int16).numpy().tobytes())


def test_read_wav_gives_the_samples_wave_wrote(tmp_path):
    samples = torch.tensor([0, 1, -1, 32767, -32768, 1000], dtype=torch.int16)
    _write_wav(tmp_path / "3_test_7.wav", samples)
    x = read_wav(tmp_path / "3_test_7.wav")
    assert x.dtype == torch.float32 and torch.equal(x, samples.float() / 32768)
    _write_wav(tmp_path / "stereo.wav", torch.zeros(8, dtype=torch.int16), channels=2)
    with pytest.raises(DataError, match="2 channel.*expected mono 16-bit PCM at 8000 Hz"):
        read_wav(tmp_path / "stereo.wav")
    _write_wav(tmp_path / "fast.wav", samples, rate=16000)
    with pytest.raises(DataError, match="16000 Hz; expected"):
        read_wav(tmp_path / "fast.wav")
    (tmp_path / "junk.wav").write_bytes(b"not a wav file")
    with pytest.raises(DataError, match="not a readable WAV"):
        read_wav(tmp_path / "junk.wav")


@pytest.fixture(scope="module")
def fsdd(data_dir):
    dm = SpeechDataModule(root=str(data_dir), val_size=300, split_seed=0)  # features cached in ZOO_CACHE_DIR
    dm.setup("fit")
    return dm


def test_the_recordings_are_fsdd_v1_0_10(data_dir):
    assert recordings_digest(data_dir, fsdd_recordings()) == FSDD_DIGEST


def test_official_split_by_take_with_a_seeded_validation_carve_out(fsdd, data_dir):
    takes, labels, split = fsdd.takes, fsdd.labels, fsdd.split
    assert (takes[split["train"]] >= 5).all() and (takes[split["val"]] >= 5).all()  # no take 0-4 in training
    assert (takes[split["test"]] <= 4).all() and len(split["test"]) == 300  # every take 0-4 is a test file
    assert torch.bincount(labels[split["test"]], minlength=10).tolist() == [30] * 10
    assert (len(split["train"]), len(split["val"])) == (2400, 300)
    assert not set(split["train"].tolist()) & set(split["val"].tolist())
    other = SpeechDataModule(root=str(data_dir), split_seed=1)
    other.setup()
    assert not torch.equal(other.split["val"], split["val"])  # split_seed decides the carve-out
    assert torch.equal(other.split["test"], split["test"])


def test_features_are_standardised_log_mels_with_padding_zeroed(fsdd):
    n_mels, frames = 40, 64
    assert fsdd.features.shape == (3000, n_mels, frames) and fsdd.features.dtype == torch.float32
    real = torch.arange(frames) < fsdd.lengths[:, None]  # (N, frames)
    assert (fsdd.lengths >= 8).all() and (fsdd.lengths <= frames).all()
    train = fsdd.split["train"]
    train_frames = fsdd.features[train].transpose(1, 2)[real[train]]  # (frames of the training set, n_mels)
    assert train_frames.mean(0).abs().max() < 1e-3 and (train_frames.std(0) - 1).abs().max() < 1e-3
    assert (fsdd.features.transpose(1, 2)[~real] == 0).all()
    assert fsdd.facts() == {"num_classes": 10, "in_chans": 1, "img_size": (n_mels, frames), "in_features": n_mels,
                            "max_len": frames, "seq_len": frames}


def test_features_are_computed_once_and_cached(data_dir, tmp_path, monkeypatch, fsdd):
    from tasks.data import speech

    first = SpeechDataModule(root=str(data_dir), cache_dir=str(tmp_path))
    first.setup()
    cached = list((tmp_path / "speech").glob("fsdd-logmel40x64-*.safetensors"))
    assert len(cached) == 1 and torch.equal(first.features, fsdd.features)

    def compute_again(*args, **kwargs):
        raise AssertionError("the features were computed again instead of read from the cache")

    monkeypatch.setattr(speech, "fsdd_features", compute_again)
    second = SpeechDataModule(root=str(data_dir), cache_dir=str(tmp_path))
    second.setup()
    assert torch.equal(second.features, first.features)
    with pytest.raises(AssertionError, match="computed again"):  # other settings: another cache entry
        SpeechDataModule(root=str(data_dir), cache_dir=str(tmp_path), n_mels=32).setup()


def _batch(dm, n=32):
    idx = dm.split["train"][:n]
    return dm.features[idx], dm.lengths[idx], dm.labels[idx]


def test_spec_augment_masks_training_batches_only(fsdd):
    x, lengths, y = _batch(fsdd)
    training = SimpleNamespace(training=True, lightning_module=SimpleNamespace(model_name="transformer_encoder"))
    evaluating = SimpleNamespace(training=False, lightning_module=training.lightning_module)
    fsdd.trainer = evaluating
    (seq, mask), y_eval = fsdd.on_after_batch_transfer((x.clone(), lengths, y), 0)
    assert torch.equal(seq, x.transpose(1, 2)) and torch.equal(y_eval, y)  # evaluation: untouched
    fsdd.trainer = training
    torch.manual_seed(0)
    (seq, mask), _ = fsdd.on_after_batch_transfer((x.clone(), lengths, y), 0)
    fsdd.trainer = None
    changed = seq != x.transpose(1, 2)  # (B, T, n_mels)
    assert changed.any() and (seq[changed] == 0).all()  # masked values are zero (the training mean)
    whole_band = (seq == 0).all(1)  # (B, n_mels): a mel band masked over all frames
    assert whole_band.any(1).float().mean() > 0.5  # most spectrograms lose at least one band


def test_layout_follows_the_model(fsdd):
    x, lengths, _ = _batch(fsdd, 4)
    assert (layout_for("mobilenet_tiny"), layout_for("timm/resnet10t")) == ("image", "image")
    assert (layout_for("transformer_encoder"), layout_for("lstm")) == ("sequence", "sequence")
    image = fsdd.to_batch(x, lengths, train=False, layout="image")
    assert image.shape == (4, 1, 40, 64) and torch.equal(image[:, 0], x)
    seq, mask = fsdd.to_batch(x, lengths, train=False, layout="sequence")
    assert seq.shape == (4, 64, 40) and mask.shape == (4, 64)
    assert torch.equal((~mask).sum(1), lengths)  # True exactly at the padded frames
    with pytest.raises(DataError, match="data.layout='rows'; choose image"):
        SpeechDataModule(root=".", layout="rows")


def test_model_auto_picks_the_transformer_for_speech(compose_cfg):
    cfg = compose_cfg("data=fsdd")
    assert cfg.model.name == "transformer_encoder"
    assert "input data type: speech" in cfg.selection.selection.summary
    assert (cfg.trainer.max_epochs, cfg.task.label_smoothing) == (20, 0.1)  # its own recipe on fsdd applies
    dm = SpeechDataModule(root=cfg.data.root)
    kwargs = model_config(cfg, dm)
    assert (kwargs["in_features"], kwargs["num_classes"], kwargs["max_len"]) == (40, 10, 64)


@pytest.mark.parametrize("model", ["transformer_encoder", "mobilenet_tiny", "lstm"])
def test_each_model_of_the_speech_branch_trains_on_fsdd(model, compose_cfg, tmp_path, fsdd, data_dir):
    cfg = compose_cfg(*fast_overrides("data=fsdd", f"model={model}", *SMALL_MODEL.get(model, []), *SMALL_DATA["fsdd"],
                                      "trainer.limit_train_batches=2", "logger=none"))
    metrics = run(cfg)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["model"] == model and 0 <= metrics["test/acc"] <= 1
    # zoo predict on WAV files, from the checkpoint alone, sees what the model saw in training: the same features
    trained = zoo.load_model(saved["best_checkpoint"])
    assert trained.zoo_preprocessing["kind"] == "speech"
    test = fsdd.split["test"][:3]
    wavs = [data_dir / fsdd_recordings()[i].rel for i in test.tolist()]
    with torch.no_grad():
        batch = fsdd.to_batch(fsdd.features[test], fsdd.lengths[test], train=False, layout=layout_for(model))
        expected = (trained(*batch) if isinstance(batch, tuple) else trained(batch)).softmax(-1)
    predicted = classify(trained, wavs, top_k=10)
    for row, probs in zip(predicted, expected, strict=True):
        assert [p for _, p in sorted(row, key=lambda cp: int(cp[0]))] == pytest.approx(probs.tolist(), abs=1e-5)


@pytest.mark.parametrize(("name", "kwargs"), [("transformer_encoder", {"max_len": 64}), ("lstm", {}), ("gru", {})])
def test_sequence_models_read_frames_and_ignore_the_padded_ones(name, kwargs):
    import zoo

    model = zoo.create_model(name, in_features=40, num_classes=10, **kwargs).eval()
    x = torch.randn(2, 64, 40)  # (B, frames, n_mels)
    padding_mask = torch.arange(64) >= torch.tensor([[30], [64]])  # first spectrogram: 30 real frames
    changed = x.clone()
    changed[0, 30:] = torch.randn(34, 40)  # other values in its padding only
    with torch.no_grad():
        out = model(x, padding_mask)
        assert out.shape == (2, 10)
        assert torch.allclose(model(changed, padding_mask), out, atol=1e-5)
        assert not torch.allclose(model(changed), model(x), atol=1e-5)  # without the mask the padding counts


@pytest.mark.parametrize("model", ["transformer_encoder", "mobilenet_tiny", "lstm"])
def test_compare_speech_gives_every_model_the_same_budget_on_fsdd(model, compose_cfg):
    from tasks.validate import check_compatible

    cfg = compose_cfg("experiment=compare_speech", f"model={model}")
    assert (cfg.data.dataset, cfg.trainer.max_epochs, cfg.task.label_smoothing) == ("fsdd", 12, 0.1)  # no recipe
    check_compatible(cfg)  # the model can train on speech


def test_an_image_only_model_on_fsdd_fails_naming_the_speech_models(compose_cfg):
    from tasks.validate import ConfigError, check_compatible

    cfg = compose_cfg("data=fsdd", "model=lenet5")
    with pytest.raises(ConfigError, match=r"fsdd is speech data for classify.*Models for fsdd: .*mobilenet_tiny"):
        check_compatible(cfg)
