"""Kokoro's ONNX graph as the engine runs it: pitch exposed, convolutions in float.

**Pitch.** The predicted F0 curve is multiplied by an input.

Kokoro predicts an F0 curve (Hz, one value per frame) from the text and the style's
prosody half, and its decoder synthesises speech from that curve: a harmonic source at
those frequencies, shaped by the decoder's filters. Multiplying the curve before the
decoder changes the pitch and nothing else: the formants, the timing and the length stay
where the model put them. The other way to shift pitch, synthesising slower and
resampling (synthesis/engines/kokoro/pitch.py ``play_faster``), moves the formants with the pitch and
stretches the model's timing; on 6 Mandarin sentences heard by Whisper base it cost
intelligibility (CER 0.22-0.25 against 0.07-0.18 through the curve, same voices and factors).

**Float convolutions.** The bundled model is dynamically quantised: each of its 87
convolutions quantises its input to uint8 at run time and runs ONNX Runtime's ConvInteger,
which has no fast kernel on x86 (57 % of a run on an AVX-512 Xeon; with int8 weights,
which could use VNNI, it ran 4x slower still). Their weights are dequantised once here and
the convolutions run in float (MLAS, near the CPU's peak, so they stay most of the work): a
run takes 5-10 % less time, and the output no longer carries the activations' 8-bit
rounding (the stock voice's Mandarin CER heard by Whisper base 0.170 -> 0.119). The
decoder's convolutions dominate the model's cost (128 channels at 4.8 kHz frames), so the
rest stays quantised. The file grows from 92 MB to 256 MB.

:func:`engine_model` writes, once per model, the edited copy of the stock graph (one more
input, ``f0_scale``, float, shape [1]) and keeps it beside the stock file; the stamp next to
it names the source model's sha256 and its own, so a stale or corrupt copy is rebuilt, and
copies made by earlier edit versions are removed. Editing needs the ``onnx`` package;
running the result needs only ONNX Runtime.
"""
from __future__ import annotations

import hashlib
import json
import logging
from collections import defaultdict
from pathlib import Path
from typing import Any

from core.atomic_files import atomic_write, sha256_file

log = logging.getLogger(__name__)

F0_SCALE_INPUT = "f0_scale"
#: Bump when the edit changes; a copy made by another version is rebuilt.
EDIT_VERSION = "2"
#: The predicted F0 curve (after F0_proj, squeezed and reshaped to [1, frames]) and the one
#: node that reads it: the decoder, which feeds both its F0 conditioning and its harmonic source.
_F0_CURVE = "/encoder/Reshape_output_0"
_DECODER_F0_INPUT = "/decoder/decoder/Unsqueeze"
_SCALED = "f0_curve_scaled"


class GraphMismatch(RuntimeError):
    """The model is not the Kokoro graph this edit was written for."""


def edit(model_bytes: bytes) -> bytes:
    """The serialised model with ``f0_scale`` on the F0 curve and its convolutions in float."""
    import onnx

    model = onnx.load_from_string(model_bytes)
    _expose_f0_scale(model.graph)
    _float_convolutions(model.graph)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _expose_f0_scale(graph: Any) -> None:
    """Multiply the F0 curve the decoder reads by a new input, ``f0_scale``."""
    from onnx import TensorProto, helper

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


class _Graph:
    """Who produces and who reads each tensor, and the initialisers by name."""

    def __init__(self, graph: Any) -> None:
        self.producer: dict[str, Any] = {}
        self.readers: dict[str, list[Any]] = defaultdict(list)
        for node in graph.node:
            for name in node.input:
                self.readers[name].append(node)
            for name in node.output:
                self.producer[name] = node
        self.initialisers = {i.name: i for i in graph.initializer}

    def only_reader(self, tensor: str, op_type: str) -> Any:
        readers = self.readers[tensor]
        if len(readers) != 1 or readers[0].op_type != op_type:
            raise GraphMismatch(f"expected {tensor} read by one {op_type}, "
                                f"found {[n.op_type for n in readers]}")
        return readers[0]

    def made_by(self, tensor: str, op_type: str) -> Any:
        node = self.producer.get(tensor)
        if node is None or node.op_type != op_type:
            raise GraphMismatch(f"expected {tensor} made by {op_type}, found {node and node.op_type}")
        return node

    def constant(self, tensor: str) -> Any:
        from onnx import numpy_helper

        if tensor not in self.initialisers:
            raise GraphMismatch(f"expected {tensor} to be a constant")
        return numpy_helper.to_array(self.initialisers[tensor])


def _float_convolutions(graph: Any) -> None:
    """Replace each dynamically quantised convolution by a float Conv on dequantised weights.

    The quantiser wrote each one as DynamicQuantizeLinear(x) -> ConvInteger(x_q, w_q, x_zp,
    w_zp) [-> Add(bias quantised at x_scale * w_scale)] -> Cast -> Mul(x_scale * w_scale);
    all of it becomes Conv(x, (w_q - w_zp) * w_scale [, bias]) writing the Mul's output.
    """
    import numpy as np
    from onnx import helper, numpy_helper

    g = _Graph(graph)
    replaced: dict[int, Any] = {}
    dropped: set[int] = set()
    weights = []
    for conv in [n for n in graph.node if n.op_type == "ConvInteger"]:
        quantise = g.made_by(conv.input[0], "DynamicQuantizeLinear")
        x, x_scale = quantise.input[0], quantise.output[1]
        following = g.readers[conv.output[0]]
        bias = None
        if len(following) == 1 and following[0].op_type == "Add":
            add = following[0]
            quantised_bias = next(i for i in add.input if i != conv.output[0])
            # the bias, quantised at run time: Reshape(Cast(Floor(Div(bias, scale))))
            cast = g.made_by(g.made_by(quantised_bias, "Reshape").input[0], "Cast")
            divide = g.made_by(g.made_by(cast.input[0], "Floor").input[0], "Div")
            bias = divide.input[0]
            g.constant(bias)
            to_float = g.only_reader(add.output[0], "Cast")
            chain = [add, to_float]
        else:
            to_float = g.only_reader(conv.output[0], "Cast")
            chain = [to_float]
        rescale = g.only_reader(to_float.output[0], "Mul")
        scales = g.made_by(next(i for i in rescale.input if i != to_float.output[0]), "Mul")
        if x_scale not in scales.input:
            raise GraphMismatch(f"{conv.name}: its output is not rescaled by its input's scale")
        w_scale = g.constant(next(i for i in scales.input if i != x_scale))
        w_zero = g.constant(conv.input[3]) if len(conv.input) > 3 and conv.input[3] else 0
        w = (g.constant(conv.input[1]).astype(np.float32) - np.float32(w_zero)) * w_scale.astype(np.float32)
        weight = f"{conv.name}/float_weight"
        weights.append(numpy_helper.from_array(w, weight))
        floating = helper.make_node("Conv", [x, weight] + ([bias] if bias else []), [rescale.output[0]],
                                    name=f"{conv.name}/float")
        floating.attribute.extend(conv.attribute)
        replaced[id(conv)] = floating
        dropped.update(id(n) for n in (*chain, rescale))
    if not replaced:
        return
    nodes = [replaced.get(id(n), n) for n in graph.node if id(n) not in dropped]
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(weights)
    _drop_unused(graph)


def _drop_unused(graph: Any) -> None:
    """Remove nodes whose outputs nobody reads, then initialisers nobody reads."""
    wanted = {o.name for o in graph.output}
    while True:
        read = wanted | {name for node in graph.node for name in node.input}
        kept = [n for n in graph.node if any(o in read for o in n.output)]
        if len(kept) == len(graph.node):
            break  # ``read`` is what the final nodes read
        del graph.node[:]
        graph.node.extend(kept)
    kept_initialisers = [i for i in graph.initializer if i.name in read]
    del graph.initializer[:]
    graph.initializer.extend(kept_initialisers)


def engine_model(source: Path, source_sha256: str) -> Path:
    """The edited copy of ``source`` (whose verified sha256 is given), built on first use."""
    out = source.with_name(f"{source.stem}.edit-v{EDIT_VERSION}.onnx")
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
    _remove_older_copies(source, keep=out)
    return out


def _remove_older_copies(source: Path, keep: Path) -> None:
    """Copies made by earlier edit versions (``.f0-v1`` was the first) are never read again."""
    for pattern in (f"{source.stem}.f0-v*", f"{source.stem}.edit-v*"):
        for old in source.parent.glob(pattern):
            if old.suffix in (".onnx", ".json") and old.with_suffix(".onnx") != keep:
                old.unlink(missing_ok=True)
