"""Spoken audio to a model's input: WAV files -> standardised log-mel spectrograms, in the model's layout.

One implementation for training (``tasks/data/speech.py`` computes its cached features with it) and for
prediction (``zoo predict`` on WAV files, with the input contract a trained speech model carries), so the two
cannot drift apart. WAVs are read with the standard library's ``wave``; the mel filterbank is torchaudio's.

The contract (``model.zoo_preprocessing``, kind ``speech``): ``sample_rate``, ``n_mels``, ``n_fft``,
``hop_length``, ``frames``, the per-band ``mean``/``std`` of the training frames, the ``classes``.
"""

from __future__ import annotations

import wave
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from zoo.registry import ZooError

__all__ = ["LOG_FLOOR", "fit_frames", "layout_for", "load_speech", "log_mel", "read_wav", "standardise",
           "to_model_input"]

LOG_FLOOR = 1e-6  # log(mel + floor): silence maps to log(1e-6) instead of -inf
LAYOUTS = ("image", "sequence")


def read_wav(path: str | Path, *, sample_rate: int, error: type[ZooError] = ZooError) -> torch.Tensor:
    """A mono 16-bit PCM WAV as a float tensor (samples,) in [-1, 1), read with the standard library.

    Nothing is resampled or mixed down here: features computed at another rate would silently mean other
    frequencies, so a file in another format is refused (``error``) with the command that converts it.
    """
    convert = f"convert it: ffmpeg -i IN -ac 1 -ar {sample_rate} -sample_fmt s16 OUT.wav"
    try:
        with wave.open(str(path), "rb") as w:
            fmt = (w.getnchannels(), w.getsampwidth(), w.getframerate())
            raw = w.readframes(w.getnframes())
    except FileNotFoundError:
        raise error(f"{path}: no such WAV file") from None
    except (wave.Error, EOFError, OSError) as e:  # EOFError: an empty or cut header; OSError: a folder, unreadable
        why = ("empty, 0 bytes" if Path(path).is_file() and Path(path).stat().st_size == 0
               else getattr(e, "strerror", None) or str(e) or type(e).__name__)
        raise error(f"{path} is not a readable WAV file ({why}); replace it, or {convert}") from None
    if fmt != (1, 2, sample_rate):
        raise error(f"{path}: {fmt[0]} channel(s), {8 * fmt[1]}-bit, {fmt[2]} Hz; expected mono 16-bit PCM at "
                    f"{sample_rate} Hz: {convert}")
    return torch.frombuffer(bytearray(raw), dtype=torch.int16).float() / 32768  # little-endian, as WAV is


def fit_frames(wave_: torch.Tensor, *, frames: int, hop_length: int) -> tuple[torch.Tensor, int]:
    """A waveform right-padded with zeros, or centre-cropped, to ``(frames - 1) * hop_length`` samples (with
    centred STFT windows exactly ``frames`` frames), and its number of real frames (whose centre lies in it)."""
    samples = (frames - 1) * hop_length
    if len(wave_) > samples:
        start = (len(wave_) - samples) // 2
        wave_ = wave_[start : start + samples]
    out = torch.zeros(samples)
    out[: len(wave_)] = wave_
    return out, min(frames, (len(wave_) - 1) // hop_length + 1)


def log_mel(waves: torch.Tensor, *, sample_rate: int, n_mels: int, n_fft: int, hop_length: int,
            chunk: int = 500) -> torch.Tensor:
    """Waveforms (N, samples) -> log-mel spectrograms (N, n_mels, samples // hop_length + 1)."""
    from torchaudio.transforms import MelSpectrogram

    mel = MelSpectrogram(sample_rate, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels)
    return torch.cat([mel(w).add_(LOG_FLOOR).log_() for w in waves.split(chunk)])  # power -> log power


def standardise(features: torch.Tensor, lengths: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """(N, n_mels, frames) log-mels standardised per band; frames past each recording's end set to 0 (the mean)."""
    real = torch.arange(features.shape[-1]) < lengths[:, None]  # (N, frames)
    x = (features - mean[:, None]) / std[:, None]
    return x.masked_fill(~real[:, None, :], 0.0).contiguous()


def to_model_input(x: torch.Tensor, lengths: torch.Tensor, layout: str) -> Any:
    """(B, n_mels, frames) features -> ``image`` (B, 1, n_mels, frames), or ``sequence`` ((B, frames, n_mels),
    padding_mask (B, frames) True at padded frames), the text classifiers' (tokens, padding_mask) format."""
    if layout == "image":
        return x.unsqueeze(1)
    padding_mask = torch.arange(x.shape[-1], device=x.device) >= lengths[:, None]
    return x.transpose(1, 2).contiguous(), padding_mask


def layout_for(model_name: str | None) -> str:
    """The batch layout a model takes: ``image`` for models whose primary modality is images (CNNs, and the
    ``timm/``/``torchvision/`` image classifiers), ``sequence`` for the rest (Transformers, recurrent nets)."""
    if not model_name:
        return "sequence"
    if "/" in model_name:
        return "image"
    from zoo.registry import model_info

    return "image" if model_info(model_name).modality == "image" else "sequence"


def load_speech(paths: Sequence[str | Path], preprocessing: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """WAV files -> standardised features (N, n_mels, frames) and real frame counts (N,), as the model was trained."""
    p = preprocessing
    hop, frames = int(p["hop_length"]), int(p["frames"])
    fitted = [fit_frames(read_wav(path, sample_rate=int(p["sample_rate"])), frames=frames, hop_length=hop)
              for path in paths]
    waves = torch.stack([w for w, _ in fitted])
    lengths = torch.tensor([n for _, n in fitted])
    feats = log_mel(waves, sample_rate=int(p["sample_rate"]), n_mels=int(p["n_mels"]), n_fft=int(p["n_fft"]),
                    hop_length=hop)
    return standardise(feats, lengths, torch.tensor(p["mean"]), torch.tensor(p["std"])), lengths
