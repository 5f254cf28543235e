"""Speaker embeddings: a numpy port of Resemblyzer's voice encoder (no torch at run time).

The network and its preprocessing follow ``resemblyzer==0.1.4``: 16 kHz audio, volume
raised to -30 dBFS, long silences shortened, a 40-band power mel spectrogram (25 ms
windows, 10 ms hop), 1.6 s partial utterances at 1.3 per second, a 3-layer LSTM (256
units) whose last hidden state goes through linear + ReLU + L2 norm, and the partial
embeddings averaged and re-normalised.

Only the pretrained weights are taken from the ``resemblyzer`` package, which is never
imported (it needs torch, librosa and webrtcvad). The checkpoint is read by a restricted
unpickler that builds numpy arrays and refuses every global it does not know, so loading
a checkpoint cannot execute code.

One deliberate difference: Resemblyzer finds silences with webrtcvad; here a 30 ms window
is voiced when its energy is within ``_VAD_RANGE_DB`` of the loudest window (plus one
window of hangover). The smoothing and dilation around that decision are Resemblyzer's,
so pauses are shortened the same way. Without any trimming, agreement with Resemblyzer
drops to a cosine of about 0.93-0.98 on short prompts; with it, it is about 0.98-1.0.
"""
from __future__ import annotations

import collections
import importlib.util
import io
import pickle
import threading
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soxr

from core.lazy import process_wide

__all__ = [
    "SpeakerEncoder",
    "UnsafeCheckpointError",
    "cosine_similarity",
    "get_speaker_encoder",
    "load_torch_checkpoint",
]

# --- Resemblyzer hyper-parameters (resemblyzer/hparams.py) ---------------------------
SAMPLE_RATE = 16000
_N_FFT = SAMPLE_RATE * 25 // 1000  # 400 samples, 25 ms
_HOP = SAMPLE_RATE * 10 // 1000  # 160 samples, 10 ms
_N_MELS = 40
_PARTIAL_FRAMES = 160  # 1.6 s
_PARTIAL_RATE = 1.3  # partials per second
_MIN_COVERAGE = 0.75
_NORM_TARGET_DBFS = -30.0
_INT16_MAX = 2**15 - 1
_VAD_WINDOW = SAMPLE_RATE * 30 // 1000  # 480 samples, 30 ms
_VAD_AVERAGE_WIDTH = 8
_VAD_MAX_SILENCE = 6
_HIDDEN = 256
_EMBEDDING = 256
_LAYERS = 3

# --- Port-specific choices ---------------------------------------------------------
#: A 30 ms window counts as voice when its energy is at most this far below the loudest one.
_VAD_RANGE_DB = 40.0
#: Shortest audio (after silence trimming) that is embedded; shorter is mostly padding.
MIN_DURATION_S = 0.5


class UnsafeCheckpointError(pickle.UnpicklingError):
    """The checkpoint references a global that the restricted unpickler does not allow."""


# =====================================================================================
# Checkpoint loading without torch
# =====================================================================================

@dataclass(frozen=True)
class _StorageType:
    """Stands in for ``torch.FloatStorage`` and friends: only the element dtype matters."""

    name: str
    dtype: np.dtype


_STORAGE_TYPES: dict[str, _StorageType] = {
    name: _StorageType(name, np.dtype(code))
    for name, code in {
        "DoubleStorage": "<f8",
        "FloatStorage": "<f4",
        "HalfStorage": "<f2",
        "LongStorage": "<i8",
        "IntStorage": "<i4",
        "ShortStorage": "<i2",
        "CharStorage": "i1",
        "ByteStorage": "u1",
        "BoolStorage": "?",
    }.items()
}


class _Storage:
    """A flat typed buffer; in the legacy format its bytes arrive after the pickle."""

    def __init__(self, dtype: np.dtype, numel: int) -> None:
        self.dtype = dtype
        self.numel = numel
        self._data: np.ndarray | None = None

    def fill(self, data: np.ndarray) -> None:
        if data.shape != (self.numel,):
            raise ValueError(f"storage holds {data.size} elements, expected {self.numel}")
        self._data = data

    @property
    def data(self) -> np.ndarray:
        if self._data is None:
            raise ValueError("checkpoint storage was never filled")
        return self._data


class _StorageView:
    """A legacy (torch < 0.4) view into part of another storage."""

    def __init__(self, base: _Storage, offset: int, numel: int) -> None:
        self.base, self.offset, self.numel = base, offset, numel

    @property
    def data(self) -> np.ndarray:
        return self.base.data[self.offset : self.offset + self.numel]


@dataclass
class _PendingTensor:
    """What ``_rebuild_tensor_v2`` returns; turned into an array once storages are read."""

    storage: _Storage | _StorageView
    offset: int
    shape: tuple[int, ...]
    strides: tuple[int, ...]

    def materialize(self) -> np.ndarray:
        flat = self.storage.data
        if any(s < 0 for s in self.shape) or any(s < 0 for s in self.strides):
            raise ValueError("negative tensor size or stride in checkpoint")
        if len(self.shape) != len(self.strides):
            raise ValueError("tensor size and stride lengths differ in checkpoint")
        if 0 in self.shape:
            return np.zeros(self.shape, dtype=flat.dtype.newbyteorder("="))
        last = self.offset + sum((n - 1) * s for n, s in zip(self.shape, self.strides))
        if self.offset < 0 or last >= flat.size:
            raise ValueError("tensor reaches outside its storage in checkpoint")
        item = flat.itemsize
        view = np.lib.stride_tricks.as_strided(
            flat[self.offset :],
            shape=self.shape,
            strides=tuple(s * item for s in self.strides),
            writeable=False,
        )
        return np.array(view, dtype=flat.dtype.newbyteorder("="), order="C")


def _rebuild_tensor_v2(
    storage: Any, storage_offset: int, size: tuple[int, ...], stride: tuple[int, ...], *_: Any
) -> _PendingTensor:
    if not isinstance(storage, (_Storage, _StorageView)):
        raise pickle.UnpicklingError("tensor is not backed by a checkpoint storage")
    return _PendingTensor(storage, int(storage_offset), tuple(map(int, size)), tuple(map(int, stride)))


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    **{("torch", name): st for name, st in _STORAGE_TYPES.items()},
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the handful of globals a torch state dict needs."""

    def __init__(self, file: io.BufferedIOBase, persistent_load: Callable[[Any], Any] | None = None) -> None:
        super().__init__(file)
        self._persistent = persistent_load

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafeCheckpointError(f"checkpoint references forbidden global {module}.{name}") from None

    def persistent_load(self, pid: Any) -> Any:
        if self._persistent is None:
            raise pickle.UnpicklingError("unexpected persistent id in checkpoint")
        return self._persistent(pid)


def _parse_storage_pid(pid: Any) -> tuple[_StorageType, str, int, Any]:
    if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
        raise pickle.UnpicklingError(f"unsupported persistent id in checkpoint: {pid!r:.80}")
    storage_type, key, numel = pid[1], str(pid[2]), int(pid[4])
    if not isinstance(storage_type, _StorageType):
        raise pickle.UnpicklingError("persistent id does not name a storage type")
    if numel < 0:
        raise pickle.UnpicklingError("negative storage size in checkpoint")
    return storage_type, key, numel, pid[5] if len(pid) > 5 else None


def _materialize(obj: Any) -> Any:
    if isinstance(obj, _PendingTensor):
        return obj.materialize()
    if isinstance(obj, dict):
        out = type(obj)() if isinstance(obj, collections.OrderedDict) else {}
        for k, v in obj.items():
            out[k] = _materialize(v)
        return out
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialize(v) for v in obj)
    return obj


def _load_zip(zf: zipfile.ZipFile) -> Any:
    """torch >= 1.6 format: ``<root>/data.pkl`` plus one ``<root>/data/<key>`` per storage."""
    pkl_names = [n for n in zf.namelist() if n.endswith("data.pkl") and n.count("/") == 1]
    if len(pkl_names) != 1:
        raise ValueError("not a torch checkpoint: expected exactly one <root>/data.pkl")
    root = pkl_names[0].rsplit("/", 1)[0]
    byteorder = "little"
    if f"{root}/byteorder" in zf.namelist():
        byteorder = zf.read(f"{root}/byteorder").decode("ascii").strip()
    if byteorder not in ("little", "big"):
        raise ValueError(f"unknown byte order {byteorder!r} in checkpoint")
    storages: dict[str, _Storage] = {}

    def persistent_load(pid: Any) -> _Storage:
        storage_type, key, numel, _ = _parse_storage_pid(pid)
        if key not in storages:
            dtype = storage_type.dtype.newbyteorder("<" if byteorder == "little" else ">")
            try:
                raw = zf.read(f"{root}/data/{key}")
            except KeyError:
                raise ValueError(f"storage {key} is missing from checkpoint") from None
            if len(raw) < numel * dtype.itemsize:
                raise ValueError(f"storage {key} is truncated in checkpoint")
            storage = _Storage(dtype, numel)
            storage.fill(np.frombuffer(raw, dtype=dtype, count=numel))
            storages[key] = storage
        return storages[key]

    with zf.open(pkl_names[0]) as f:
        obj = _RestrictedUnpickler(io.BufferedReader(f), persistent_load).load()
    return _materialize(obj)


_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def _load_legacy(f: io.BufferedIOBase) -> Any:
    """torch < 1.6 format: magic, version, sys info, the object, storage keys, raw storages."""
    if _RestrictedUnpickler(f).load() != _LEGACY_MAGIC:
        raise ValueError("not a torch checkpoint (bad magic number)")
    if _RestrictedUnpickler(f).load() != 1001:
        raise ValueError("unsupported torch checkpoint protocol version")
    sys_info = _RestrictedUnpickler(f).load()
    little = bool(sys_info.get("little_endian", True)) if isinstance(sys_info, dict) else True
    order = "<" if little else ">"
    storages: dict[str, _Storage] = {}
    views: dict[str, _StorageView] = {}

    def persistent_load(pid: Any) -> _Storage | _StorageView:
        storage_type, key, numel, view = _parse_storage_pid(pid)
        if key not in storages:
            storages[key] = _Storage(storage_type.dtype.newbyteorder(order), numel)
        if view is None:
            return storages[key]
        view_key, offset, view_numel = view
        if view_key not in views:
            views[view_key] = _StorageView(storages[key], int(offset), int(view_numel))
        return views[view_key]

    obj = _RestrictedUnpickler(f, persistent_load).load()
    keys = _RestrictedUnpickler(f).load()
    for key in keys:
        storage = storages.get(str(key))
        if storage is None:
            raise ValueError(f"checkpoint lists unknown storage {key!r}")
        (numel,) = np.frombuffer(f.read(8), dtype=order + "i8")
        if numel != storage.numel:
            raise ValueError(f"storage {key} has {numel} elements, expected {storage.numel}")
        raw = f.read(int(numel) * storage.dtype.itemsize)
        if len(raw) != int(numel) * storage.dtype.itemsize:
            raise ValueError(f"storage {key} is truncated in checkpoint")
        storage.fill(np.frombuffer(raw, dtype=storage.dtype))
    return _materialize(obj)


def load_torch_checkpoint(path: str | Path) -> Any:
    """Load a ``torch.save`` file (zip or legacy format) as plain Python + numpy arrays.

    Tensors become C-contiguous numpy arrays in native byte order. Any global other than
    ``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2`` and the torch storage
    types raises :class:`UnsafeCheckpointError`; nothing from the file is ever executed.
    """
    path = Path(path)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            return _load_zip(zf)
    with open(path, "rb") as f:
        return _load_legacy(io.BytesIO(f.read()))


def _default_weights_path() -> Path:
    """``pretrained.pt`` inside the installed resemblyzer package, found without importing it."""
    spec = importlib.util.find_spec("resemblyzer")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for loc in locations:
        candidate = Path(loc) / "pretrained.pt"
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        "Resemblyzer weights not found: install resemblyzer==0.1.4 (--no-deps is enough) "
        "or pass weights_path"
    )


# =====================================================================================
# Audio preprocessing (resemblyzer/audio.py)
# =====================================================================================

def _normalize_volume(wav: np.ndarray) -> np.ndarray:
    """Raise (never lower) the level to -30 dBFS, as ``normalize_volume(increase_only=True)``."""
    rms = float(np.sqrt(np.mean((wav.astype(np.float64) * _INT16_MAX) ** 2)))
    if rms == 0.0:
        raise ValueError("audio is completely silent")
    change_db = _NORM_TARGET_DBFS - 20.0 * np.log10(rms / _INT16_MAX)
    if change_db < 0:
        return wav
    return (wav * np.float32(10.0 ** (change_db / 20.0))).astype(np.float32)


def _trim_long_silences(wav: np.ndarray) -> np.ndarray:
    """Shorten pauses to at most ~180 ms and edges to ~90 ms.

    Resemblyzer decides speech per 30 ms window with webrtcvad (mode 3). An energy gate
    does the same job on prompt audio: a window is voiced when its energy, or the previous
    window's, is within ``_VAD_RANGE_DB`` of the loudest window. The flags are then smoothed
    with an 8-window moving average, rounded, and dilated by 3 windows each side, exactly
    as Resemblyzer does. The threshold and hangover were picked by comparing the resulting
    masks and embeddings with webrtcvad's on synthetic speech.
    """
    wav = wav[: len(wav) - len(wav) % _VAD_WINDOW]
    if len(wav) == 0:
        return wav
    windows = wav.reshape(-1, _VAD_WINDOW).astype(np.float64)
    energy_db = 10.0 * np.log10(np.mean(windows**2, axis=1) + 1e-20)
    loud = energy_db > energy_db.max() - _VAD_RANGE_DB
    # webrtcvad keeps saying "speech" a little after the energy falls; one window of hangover
    flags = (loud | np.concatenate(([False], loud[:-1]))).astype(np.float64)

    width = _VAD_AVERAGE_WIDTH
    padded = np.concatenate((np.zeros((width - 1) // 2), flags, np.zeros(width // 2)))
    smoothed = np.convolve(padded, np.ones(width) / width, mode="valid")
    mask = np.round(smoothed).astype(bool)

    # binary dilation with a centred structuring element of _VAD_MAX_SILENCE + 1 windows
    half = _VAD_MAX_SILENCE // 2
    padded_mask = np.concatenate((np.zeros(half), mask, np.zeros(half)))
    grown = np.convolve(padded_mask, np.ones(2 * half + 1), mode="valid")
    return wav[np.repeat(grown > 0, _VAD_WINDOW)]


def _mel_filterbank(sr: int, n_fft: int, n_mels: int) -> np.ndarray:
    """Slaney-style mel filters with Slaney area normalisation (librosa's defaults)."""
    f_sp = 200.0 / 3.0
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0

    def hz_to_mel(hz: np.ndarray) -> np.ndarray:
        hz = np.asarray(hz, dtype=np.float64)
        log_part = min_log_mel + np.log(np.maximum(hz, 1e-10) / min_log_hz) / logstep
        return np.where(hz >= min_log_hz, log_part, hz / f_sp)

    def mel_to_hz(mel: np.ndarray) -> np.ndarray:
        return np.where(mel >= min_log_mel, min_log_hz * np.exp(logstep * (mel - min_log_mel)), f_sp * mel)

    fft_freqs = np.linspace(0.0, sr / 2.0, 1 + n_fft // 2)
    mel_freqs = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sr / 2.0), n_mels + 2))
    widths = np.diff(mel_freqs)
    ramps = mel_freqs[:, None] - fft_freqs[None, :]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (mel_freqs[2:] - mel_freqs[:-2]))[:, None]
    return weights.astype(np.float32)


_MEL_BASIS = _mel_filterbank(SAMPLE_RATE, _N_FFT, _N_MELS)
_HANN = (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(_N_FFT) / _N_FFT)).astype(np.float32)  # periodic


def _mel_spectrogram(wav: np.ndarray) -> np.ndarray:
    """Power (not log) mel spectrogram, ``(frames, 40)``, like ``librosa.feature.melspectrogram``.

    Centred frames with zero padding (librosa >= 0.10's default), periodic Hann window.
    """
    padded = np.pad(wav.astype(np.float32), _N_FFT // 2)
    n_frames = 1 + (len(padded) - _N_FFT) // _HOP
    frames = np.lib.stride_tricks.sliding_window_view(padded, _N_FFT)[:: _HOP][:n_frames]
    spectrum = np.fft.rfft(frames * _HANN, axis=1)
    power = (spectrum.real**2 + spectrum.imag**2).astype(np.float32)
    return power @ _MEL_BASIS.T


def _partial_slices(n_samples: int) -> list[slice]:
    """Mel-frame ranges of the 1.6 s partial utterances (``compute_partial_slices``)."""
    n_frames = int(np.ceil((n_samples + 1) / _HOP))
    frame_step = int(np.round((SAMPLE_RATE / _PARTIAL_RATE) / _HOP))
    steps = max(1, n_frames - _PARTIAL_FRAMES + frame_step + 1)
    slices = [slice(i, i + _PARTIAL_FRAMES) for i in range(0, steps, frame_step)]
    last = slices[-1]
    coverage = (n_samples - last.start * _HOP) / (_PARTIAL_FRAMES * _HOP)
    if coverage < _MIN_COVERAGE and len(slices) > 1:
        slices.pop()
    return slices


# =====================================================================================
# The network
# =====================================================================================

def _sigmoid(x: np.ndarray) -> np.ndarray:
    # tanh form: no overflow warnings for large negative inputs
    return 0.5 + 0.5 * np.tanh(0.5 * x)


@dataclass(frozen=True)
class _LSTMLayer:
    w_ih_t: np.ndarray  # (input, 4H), gates in PyTorch order i, f, g, o
    w_hh_t: np.ndarray  # (H, 4H)
    bias: np.ndarray  # (4H,) = b_ih + b_hh


class _VoiceEncoderNet:
    def __init__(self, state: dict[str, np.ndarray]) -> None:
        def get(name: str, shape: tuple[int, ...]) -> np.ndarray:
            if name not in state:
                raise ValueError(f"checkpoint lacks {name}")
            arr = np.asarray(state[name], dtype=np.float32)
            if arr.shape != shape:
                raise ValueError(f"{name} has shape {arr.shape}, expected {shape}")
            return arr

        gates = 4 * _HIDDEN
        self.layers: list[_LSTMLayer] = []
        for k in range(_LAYERS):
            n_in = _N_MELS if k == 0 else _HIDDEN
            self.layers.append(
                _LSTMLayer(
                    w_ih_t=np.ascontiguousarray(get(f"lstm.weight_ih_l{k}", (gates, n_in)).T),
                    w_hh_t=np.ascontiguousarray(get(f"lstm.weight_hh_l{k}", (gates, _HIDDEN)).T),
                    bias=get(f"lstm.bias_ih_l{k}", (gates,)) + get(f"lstm.bias_hh_l{k}", (gates,)),
                )
            )
        self.linear_w_t = np.ascontiguousarray(get("linear.weight", (_EMBEDDING, _HIDDEN)).T)
        self.linear_b = get("linear.bias", (_EMBEDDING,))

    def __call__(self, mels: np.ndarray) -> np.ndarray:
        """``(batch, frames, 40)`` mel partials -> ``(batch, 256)`` unit-norm embeddings."""
        batch, steps, _ = mels.shape
        H = _HIDDEN
        seq = mels.astype(np.float32)
        h = np.zeros((batch, H), np.float32)
        for k, layer in enumerate(self.layers):
            # input projections for every time step at once; only the recurrence is sequential
            x_proj = (seq.reshape(batch * steps, -1) @ layer.w_ih_t + layer.bias).reshape(batch, steps, 4 * H)
            h = np.zeros((batch, H), np.float32)
            c = np.zeros((batch, H), np.float32)
            last = k == len(self.layers) - 1
            out = None if last else np.empty((batch, steps, H), np.float32)
            for t in range(steps):
                g = x_proj[:, t] + h @ layer.w_hh_t
                i_f = _sigmoid(g[:, : 2 * H])
                c = i_f[:, H:] * c + i_f[:, :H] * np.tanh(g[:, 2 * H : 3 * H])
                h = _sigmoid(g[:, 3 * H :]) * np.tanh(c)
                if out is not None:
                    out[:, t] = h
            if out is not None:
                seq = out
        raw = np.maximum(h @ self.linear_w_t + self.linear_b, 0.0)
        norms = np.linalg.norm(raw, axis=1, keepdims=True)
        return raw / np.maximum(norms, 1e-12)


# =====================================================================================
# Public API
# =====================================================================================

class _SingleThreadedBlas:
    """Keep BLAS on one thread while any LSTM runs (needs threadpoolctl; no-op without it).

    The recurrence is ~500 small matrix products. Multi-threaded OpenBLAS spends more time
    synchronising than computing them, and on a busy machine (TTS inference next door) it
    is 3-10x slower than one thread. The limit is process-wide, so concurrent embeddings
    share it: the first one in sets it, the last one out restores the previous setting.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._limiter: Any = None

    def __enter__(self) -> None:
        with self._lock:
            if self._users == 0:
                try:
                    from threadpoolctl import threadpool_limits
                except ImportError:
                    threadpool_limits = None
                if threadpool_limits is not None:
                    self._limiter = threadpool_limits(limits=1, user_api="blas")
            self._users += 1

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._users -= 1
            if self._users == 0 and self._limiter is not None:
                self._limiter.restore_original_limits()
                self._limiter = None


_single_threaded_blas = _SingleThreadedBlas()


class SpeakerEncoder:
    """Resemblyzer's speaker encoder in numpy: audio in, 256-d unit-norm embedding out."""

    sample_rate: int = SAMPLE_RATE

    def __init__(self, weights_path: Path | None = None) -> None:
        path = Path(weights_path) if weights_path is not None else _default_weights_path()
        checkpoint = load_torch_checkpoint(path)
        state = checkpoint.get("model_state", checkpoint) if isinstance(checkpoint, dict) else None
        if not isinstance(state, dict):
            raise ValueError(f"{path} does not hold a voice encoder state dict")
        self._net = _VoiceEncoderNet(state)

    def preprocess(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """Resample to 16 kHz, raise the volume, shorten silences (``preprocess_wav``)."""
        wav = np.asarray(audio)
        if wav.ndim != 1:
            raise ValueError(f"expected mono 1-D audio, got shape {wav.shape}")
        if not np.issubdtype(wav.dtype, np.floating):
            raise ValueError(f"expected float audio in [-1, 1], got dtype {wav.dtype}")
        if sample_rate <= 0:
            raise ValueError(f"invalid sample rate {sample_rate}")
        wav = wav.astype(np.float32)
        if not np.all(np.isfinite(wav)):
            raise ValueError("audio contains NaN or infinite samples")
        if sample_rate != SAMPLE_RATE and len(wav):
            wav = soxr.resample(wav, sample_rate, SAMPLE_RATE, quality="HQ").astype(np.float32)
        if len(wav) < MIN_DURATION_S * SAMPLE_RATE:
            raise ValueError(
                f"audio too short to embed: {len(wav) / SAMPLE_RATE:.2f} s, need {MIN_DURATION_S} s"
            )
        wav = _trim_long_silences(_normalize_volume(wav))
        if len(wav) < MIN_DURATION_S * SAMPLE_RATE:
            raise ValueError(
                f"audio too short to embed: {len(wav) / SAMPLE_RATE:.2f} s of speech after trimming "
                f"silences, need {MIN_DURATION_S} s"
            )
        return wav

    def embed_preprocessed(self, wav: np.ndarray) -> np.ndarray:
        """Embed 16 kHz audio that already went through :meth:`preprocess` (``embed_utterance``)."""
        if len(wav) == 0:
            raise ValueError("audio too short to embed: no samples")
        slices = _partial_slices(len(wav))
        needed = slices[-1].stop * _HOP
        if needed >= len(wav):
            wav = np.pad(wav, (0, needed - len(wav)))
        with _single_threaded_blas:  # around the mel product too, so results never depend on it
            mel = _mel_spectrogram(wav)
            partials = self._net(np.stack([mel[s] for s in slices]))
        mean = partials.mean(axis=0)
        norm = float(np.linalg.norm(mean))
        if norm == 0.0:  # every partial was cut to zero by the ReLU
            raise ValueError("could not embed audio: the encoder found no speaker features")
        return (mean / norm).astype(np.float32)

    def embed(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """Mono float audio in [-1, 1] at any rate -> ``(256,)`` float32 unit-norm embedding.

        Raises ValueError when less than ``MIN_DURATION_S`` of audio remains after trimming.
        """
        return self.embed_preprocessed(self.preprocess(audio, sample_rate))


@process_wide
def get_speaker_encoder() -> SpeakerEncoder:
    """The process-wide encoder, loaded on first use."""
    return SpeakerEncoder()


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of the angle between two vectors (0.0 when either is all zeros)."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {a.shape} vs {b.shape}")
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b / denom) if denom > 0 else 0.0
