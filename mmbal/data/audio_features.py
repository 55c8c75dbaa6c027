"""Deterministic audio features of the audio-visual balancing code bases, in numpy.

* `kaldi_fbank`: log mel filterbank energies as `torchaudio.compliance.kaldi.fbank`
  computes them (Kaldi's `compute-fbank-feats`), written from Kaldi's definition:
  25 ms frames every 10 ms without padding (`snip_edges`), per-frame DC removal,
  pre-emphasis 0.97, a symmetric Hann window (Kaldi's `hanning`), zero-padding to the
  next power of two, the power spectrum, triangular filters equally spaced on Kaldi's mel
  scale `1127 ln(1 + f / 700)` between 20 Hz and Nyquist, `log(max(energy, float32 eps))`.
* `ogm_ge_fbank`: OGM-GE's `data/KineticSound/process_audio.py` (the `.npy` / `.pt` fbanks
  of Kinetics-Sounds and CREMA-D used by OGM-GE, MMPareto, D&R and BalanceBenchmark):
  the waveform minus its mean, `kaldi_fbank(num_mel_bins=128, dither=0, hanning,
  htk_compat, use_energy=False)`, zero-padded or cut to 1024 frames, then
  `(fbank + 4.503877) / (2 * 5.141276)`.
* `pmr_spectrogram`: PMR's AVE audio (`data/AVE/audio_preprocessing.py`): the event
  segment tiled to 10 s at 16 kHz, clipped, `scipy.signal.spectrogram(nperseg=512,
  noverlap=353)`, `log(S + 1e-7)`, standardised per clip: float32 `[257, 1004]`.
* `log_stft`: OGM-GE's VGGSound audio (`dataset/VGGSoundDataset.py`):
  `log(|librosa.stft(x, n_fft=256, hop_length=128)| + 1e-7)`, centred frames.
* `resample`: polyphase resampling (`scipy.signal.resample_poly`; librosa uses soxr or
  resampy, so values differ slightly from the upstream files, shapes do not).
* `read_pickled_array`: a pickled numpy array (PMR's `.pkl` spectrograms) through an
  unpickler that only rebuilds numpy arrays, so a `.pkl` file cannot run code.
"""

from __future__ import annotations

import math
import os
import pickle

import numpy as np
import scipy.signal

from mmbal.data import manual

# ----------------------------------------------------------------------------- resampling


def resample(x: np.ndarray, rate: int, target: int) -> np.ndarray:
  """`x` sampled at `rate` resampled to `target` (float64)."""
  x = np.asarray(x, dtype=np.float64)
  if rate == target:
    return x
  g = math.gcd(target, rate)
  return scipy.signal.resample_poly(x, target // g, rate // g)


# ----------------------------------------------------------------------------- Kaldi fbank


def _mel(f):
  return 1127.0 * np.log1p(np.asarray(f, dtype=np.float64) / 700.0)


def mel_banks(num_bins: int, fft_size: int, rate: float, low_freq: float = 20.0,
              high_freq: float = 0.0) -> np.ndarray:
  """Kaldi's triangular mel filters, `[num_bins, fft_size // 2 + 1]` (last column zero)."""
  nyquist = 0.5 * rate
  if high_freq <= 0.0:
    high_freq += nyquist
  if not 0.0 <= low_freq < high_freq <= nyquist:
    raise ValueError(f"mel banks: expected 0 <= low_freq < high_freq <= {nyquist}, "
                     f"got {low_freq}, {high_freq}")
  num_fft_bins = fft_size // 2
  mel_low, mel_high = _mel(low_freq), _mel(high_freq)
  delta = (mel_high - mel_low) / (num_bins + 1)
  b = np.arange(num_bins, dtype=np.float64)[:, None]
  left, center, right = mel_low + b * delta, mel_low + (b + 1) * delta, mel_low + (b + 2) * delta
  mel = _mel(rate / fft_size * np.arange(num_fft_bins))[None, :]
  up = (mel - left) / (center - left)
  down = (right - mel) / (right - center)
  banks = np.maximum(0.0, np.minimum(up, down))
  return np.pad(banks, ((0, 0), (0, 1)))


def kaldi_fbank(waveform: np.ndarray, rate: int, *, num_mel_bins: int = 23,
                frame_length_ms: float = 25.0, frame_shift_ms: float = 10.0,
                preemphasis: float = 0.97, low_freq: float = 20.0,
                high_freq: float = 0.0) -> np.ndarray:
  """Log mel filterbank energies `[num_frames, num_mel_bins]` float32 (see the module doc).

  Defaults as torchaudio's, with `dither=0`, `window_type="hanning"`, `use_energy=False`
  (`htk_compat` then changes nothing), `snip_edges=True`, `use_power=True`.
  """
  x = np.asarray(waveform, dtype=np.float64).reshape(-1)
  size = int(rate * frame_length_ms * 0.001)
  shift = int(rate * frame_shift_ms * 0.001)
  if len(x) < size:
    return np.zeros((0, num_mel_bins), np.float32)
  num_frames = 1 + (len(x) - size) // shift
  frames_ = np.lib.stride_tricks.sliding_window_view(x, size)[::shift][:num_frames]
  frames_ = frames_ - frames_.mean(axis=1, keepdims=True)
  previous = np.concatenate([frames_[:, :1], frames_[:, :-1]], axis=1)
  frames_ = frames_ - preemphasis * previous
  window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(size) / (size - 1))
  fft_size = 1 << (size - 1).bit_length()
  power = np.abs(np.fft.rfft(frames_ * window, n=fft_size, axis=1)) ** 2
  energies = power @ mel_banks(num_mel_bins, fft_size, rate, low_freq, high_freq).T
  eps = np.finfo(np.float32).eps
  return np.log(np.maximum(energies, eps)).astype(np.float32)


def ogm_ge_fbank(samples: np.ndarray, rate: int) -> tuple[np.ndarray, int]:
  """OGM-GE's `process_audio.py` fbank: float32 `[1024, 128]` and the real frames before padding."""
  x = np.asarray(samples, dtype=np.float64)
  fbank = kaldi_fbank(x - x.mean(), rate, num_mel_bins=128)
  real = min(len(fbank), manual.FBANK_SHAPE[0])
  out = np.zeros(manual.FBANK_SHAPE, np.float64)
  out[:real] = fbank[:real]
  return ((out - manual.FBANK_MEAN) / (2 * manual.FBANK_STD)).astype(np.float32), real


# ----------------------------------------------------------------------------- spectrograms


PMR_RATE = 16000
PMR_SAMPLES = 10 * PMR_RATE
PMR_SHAPE = (257, 1004)


def pmr_spectrogram(samples: np.ndarray) -> np.ndarray:
  """PMR's AVE spectrogram of 16-kHz samples (the event segment): float32 `[257, 1004]`.

  The samples are tiled until 10 s long (PMR tiles 10 times, which is shorter for
  segments under 1 s; mmbal tiles as often as needed so that every clip has 1004 frames).
  """
  x = np.asarray(samples, dtype=np.float64)
  if x.size == 0:
    raise ValueError("no audio samples")
  x = np.tile(x, max(10, -(-PMR_SAMPLES // len(x))))[:PMR_SAMPLES]
  x = np.clip(x, -1.0, 1.0)
  _, _, spec = scipy.signal.spectrogram(x, PMR_RATE, nperseg=512, noverlap=353)
  spec = np.log(spec + 1e-7)
  return ((spec - spec.mean()) / (spec.std() + 1e-9)).astype(np.float32)


def log_stft(samples: np.ndarray, n_fft: int = 256, hop_length: int = 128) -> np.ndarray:
  """`log(|STFT| + 1e-7)`, `[n_fft // 2 + 1, 1 + len // hop]`: librosa's centred STFT
  (periodic Hann window, zero padding as librosa >= 0.10)."""
  x = np.pad(np.asarray(samples, dtype=np.float64), n_fft // 2)
  windows = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop_length]
  window = scipy.signal.get_window("hann", n_fft, fftbins=True)
  return np.log(np.abs(np.fft.rfft(windows * window, axis=-1)) + 1e-7).T.astype(np.float32)


# ----------------------------------------------------------------------------- pickles


_NUMPY_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
}


class _ArrayUnpickler(pickle.Unpickler):
  def find_class(self, module, name):
    if (module, name) in _NUMPY_GLOBALS:
      return super().find_class(module, name)
    raise pickle.UnpicklingError(f"{module}.{name} is not part of a numpy array")


def read_pickled_array(path: str | os.PathLike) -> np.ndarray:
  """A `pickle.dump(ndarray)` file as an array; anything else is a ValueError (nothing runs)."""
  try:
    with open(path, "rb") as f:
      value = _ArrayUnpickler(f).load()
  except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as e:
    raise ValueError(f"not a pickled numpy array ({type(e).__name__}: {e})") from None
  if not isinstance(value, np.ndarray):
    raise ValueError(f"expected a pickled numpy array, got {type(value).__name__}")
  return value
