"""A trained classifier out of cadence: ONNX (any runtime), and Core ML where coremltools installs.

The exported graph is the :class:`~cadence.pipelines.classifiers.ClassifierModel` itself, its
standardisation included: ``features`` (N x D float32, AudioFeaturePrint's clip vectors, or its
window vectors) in; ``probabilities`` (N x classes, in the model's class order), ``class_index``
and ``label`` out.  The feature extractor is not in the graph (it is numpy and scipy code, not
tensor operations): its parameters travel in the file's metadata (``cadence``, JSON) with the
classes, so whoever runs the graph knows which features to give it.

ONNX: Sub, Div, then MatMul, Add and Relu per layer, Softmax, ArgMax and a Gather of the class
names; opset 17, checked with ``onnx.checker`` before it is written.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .classifier_models import ClassifierModel
from .errors import DataError, InputError
from .files import write_bytes_atomically
from .storage import is_uri

OPSET = 17
FORMATS = ("onnx", "coreml")


def to_onnx(model: ClassifierModel, metadata: dict | None = None):
    """The model as an ``onnx.ModelProto`` (checked)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if not model.weights:
        raise DataError(f"{model.kind} model: not trained yet, nothing to export")
    constants = [numpy_helper.from_array(np.asarray(model.mean, np.float32), "mean"),
                 numpy_helper.from_array(np.asarray(model.scale, np.float32), "scale"),
                 helper.make_tensor("classes", TensorProto.STRING, [len(model.classes)],
                                    [c.encode() for c in model.classes])]
    nodes = [helper.make_node("Sub", ["features", "mean"], ["centred"]),
             helper.make_node("Div", ["centred", "scale"], ["h0"])]
    last = len(model.weights) - 1
    for i, (w, b) in enumerate(zip(model.weights, model.biases)):
        constants += [numpy_helper.from_array(np.asarray(w, np.float32), f"w{i}"),
                      numpy_helper.from_array(np.asarray(b, np.float32), f"b{i}")]
        nodes += [helper.make_node("MatMul", [f"h{i}", f"w{i}"], [f"m{i}"]),
                  helper.make_node("Add", [f"m{i}", f"b{i}"], [f"z{i}" if i == last else f"a{i}"])]
        if i < last:
            nodes.append(helper.make_node("Relu", [f"a{i}"], [f"h{i + 1}"]))
    nodes += [helper.make_node("Softmax", [f"z{last}"], ["probabilities"], axis=1),
              helper.make_node("ArgMax", ["probabilities"], ["class_index"], axis=1, keepdims=0),
              helper.make_node("Gather", ["classes", "class_index"], ["label"], axis=0)]
    graph = helper.make_graph(
        nodes, "cadence_classifier",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", len(model.mean)])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", len(model.classes)]),
         helper.make_tensor_value_info("class_index", TensorProto.INT64, ["N"]),
         helper.make_tensor_value_info("label", TensorProto.STRING, ["N"])],
        constants)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="cadence",
                              doc_string=f"cadence {model.kind}: standardise, dense layers, softmax")
    proto.ir_version = 8  # readable by onnxruntime 1.10 and later
    record = {"kind": model.kind, "classes": model.classes, "params": model.params, **(metadata or {})}
    helper.set_model_props(proto, {"cadence": json.dumps(record)})
    onnx.checker.check_model(proto, full_check=True)
    return proto


def export(model: ClassifierModel, path: str | os.PathLike, format: str = "onnx",
           metadata: dict | None = None) -> Path | str:
    """Write the model to exactly ``path`` (a path, or a URI: :mod:`.storage`) in ``format`` (onnx, coreml)."""
    path = str(path) if is_uri(path) else Path(path)
    if format == "onnx":
        data = to_onnx(model, metadata).SerializeToString()
    elif format == "coreml":
        data = _coreml_bytes(model, metadata)
    else:
        raise InputError(format, "is not an export format", f"choose one of {', '.join(FORMATS)}")
    write_bytes_atomically(path, data)
    return path


def _coreml_bytes(model: ClassifierModel, metadata: dict | None) -> bytes:
    """A Core ML neural-network classifier (built with coremltools' builder, no conversion step)."""
    import logging

    # coremltools warns on import about what this export never uses: its scikit-learn converter
    # (a newer scikit-learn than it knows) and the native runtime that only macOS has (8 lines)
    chatty, level = logging.getLogger("coremltools"), logging.getLogger("coremltools").level
    chatty.setLevel(logging.ERROR)
    try:
        import coremltools as ct
        from coremltools.models import datatypes
        from coremltools.models.neural_network import NeuralNetworkBuilder
    except ImportError as e:
        raise InputError("--format coreml", f"needs coremltools, which is not installed here ({e})",
                         "pip install coremltools (it installs on macOS and on Linux x86-64), or export to onnx") from e
    finally:
        chatty.setLevel(level)
    builder = NeuralNetworkBuilder([("features", datatypes.Array(len(model.mean)))], [("probabilities", None)],
                                   mode="classifier")
    builder.add_bias("centre", -np.asarray(model.mean, np.float32), "features", "centred", shape_bias=[len(model.mean)])
    builder.add_scale("scale", 1.0 / np.asarray(model.scale, np.float32), None, has_bias=False, input_name="centred",
                      output_name="h0", shape_scale=[len(model.mean)])
    last = len(model.weights) - 1
    for i, (w, b) in enumerate(zip(model.weights, model.biases)):
        out = f"z{i}" if i == last else f"a{i}"
        builder.add_inner_product(f"dense{i}", np.asarray(w, np.float32).T, np.asarray(b, np.float32), w.shape[0],
                                  w.shape[1], True, f"h{i}", out)
        if i < last:
            builder.add_activation(f"relu{i}", "RELU", out, f"h{i + 1}")
    builder.add_softmax("softmax", f"z{last}", "probabilities")
    builder.set_class_labels(model.classes, predicted_feature_name="label", prediction_blob="probabilities")
    spec = builder.spec
    spec.description.metadata.userDefined["cadence"] = json.dumps({"kind": model.kind, "classes": model.classes,
                                                                   **(metadata or {})})
    return ct.models.MLModel(spec).get_spec().SerializeToString()
