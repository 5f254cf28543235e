"""Kokoro's ONNX graph with its pitch exposed: the predicted F0 curve times an input.

Kokoro predicts an F0 curve (Hz, one value per frame) from the text and the style's
prosody half, and its decoder synthesises speech from that curve: a harmonic source at
those frequencies, shaped by the decoder's filters. Multiplying the curve before the
decoder changes the pitch and nothing else: the formants, the timing and the length stay
where the model put them. The other way to shift pitch, synthesising slower and
resampling (synthesis/pitch.py ``play_faster``), moves the formants with the pitch and
stretches the model's timing; on 6 Mandarin sentences heard by Whisper base it cost
intelligibility (CER 0.22-0.25 against 0.07-0.18 through the curve, same voices and factors).

:func:`pitch_model` writes, once per model, a copy of the stock graph with one more input,
``f0_scale`` (float, shape [1]), and keeps it beside the stock file; the stamp next to it
names the source model's sha256 and its own, so a stale or corrupt copy is rebuilt.
Editing needs the ``onnx`` package; running the result needs only ONNX Runtime.
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from ttsplatform.atomic_files import atomic_write, sha256_file

log = logging.getLogger(__name__)

F0_SCALE_INPUT = "f0_scale"
#: Bump when the edit changes; a copy made by another version is rebuilt.
EDIT_VERSION = "1"
#: The predicted F0 curve (after F0_proj, squeezed and reshaped to [1, frames]) and the one
#: node that reads it: the decoder, which feeds both its F0 conditioning and its harmonic source.
_F0_CURVE = "/encoder/Reshape_output_0"
_DECODER_F0_INPUT = "/decoder/decoder/Unsqueeze"
_SCALED = "f0_curve_scaled"


class GraphMismatch(RuntimeError):
    """The model is not the Kokoro graph this edit was written for."""


def edit(model_bytes: bytes) -> bytes:
    """The serialised model with ``f0_scale`` multiplying the F0 curve the decoder reads."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load_from_string(model_bytes)
    graph = model.graph
    if any(i.name == F0_SCALE_INPUT for i in graph.input):
        raise GraphMismatch(f"the model already has an input {F0_SCALE_INPUT!r}")
    readers = [n for n in graph.node if _F0_CURVE in n.input]
    if [n.name for n in readers] != [_DECODER_F0_INPUT]:
        raise GraphMismatch(f"expected {_F0_CURVE} read by {_DECODER_F0_INPUT} only, "
                            f"found {[n.name for n in readers]}")
    decoder = readers[0]
    graph.input.append(helper.make_tensor_value_info(F0_SCALE_INPUT, TensorProto.FLOAT, [1]))
    scale = helper.make_node("Mul", [_F0_CURVE, F0_SCALE_INPUT], [_SCALED], name="/pitch/f0_scale")
    # Nodes must stay topologically sorted: the new one goes just before its reader.
    position = list(graph.node).index(decoder)
    graph.node.insert(position, scale)
    decoder.input[list(decoder.input).index(_F0_CURVE)] = _SCALED
    onnx.checker.check_model(model)
    return model.SerializeToString()


def pitch_model(source: Path, source_sha256: str) -> Path:
    """The edited copy of ``source`` (whose verified sha256 is given), built on first use."""
    out = source.with_name(f"{source.stem}.f0-v{EDIT_VERSION}.onnx")
    stamp = out.with_suffix(".json")
    try:
        recorded = json.loads(stamp.read_text())
    except (OSError, ValueError):
        recorded = {}
    if recorded.get("source_sha256") == source_sha256 and out.is_file():
        if sha256_file(out) == recorded.get("sha256"):
            return out
        log.warning("%s is corrupt; building it again", out)
    edited = edit(source.read_bytes())
    atomic_write(out, edited, mode=0o644)
    atomic_write(stamp, json.dumps({"source_sha256": source_sha256, "edit_version": EDIT_VERSION,
                                    "sha256": hashlib.sha256(edited).hexdigest()}).encode(), mode=0o644)
    return out
