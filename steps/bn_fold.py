"""Fold BatchNormalization layers into a neighbouring convolution or dense layer (inference-mode statistics).

Quantization-aware training fake-quantizes a convolution's raw kernel; the TFLite
converter then cannot fold the BatchNormalization that follows into the int8
convolution and keeps it as float MUL and ADD ops with DEQUANTIZE/QUANTIZE around
them. Folding first gives QAT the exact kernels the int8 model will have.

Works on a tf_keras functional model's config (the QAT worker's models).
"""
from __future__ import annotations

import numpy as np

_CONVS = ("Conv2D", "DepthwiseConv2D")


def _inbound_names(layer_config: dict) -> list[str]:
    return [ref[0] for node in layer_config["inbound_nodes"] for ref in node]


def _consumers(config: dict) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for layer in config["layers"]:
        for name in _inbound_names(layer):
            out.setdefault(name, []).append(layer["name"])
    return out


def _channels_last(bn_config: dict) -> bool:
    axis = bn_config.get("axis")
    return (list(axis) if isinstance(axis, (list, tuple)) else [axis]) in ([-1], [3], [1])


def foldable_pairs(config: dict) -> tuple[dict[str, str], dict[str, str]]:
    """({bn: conv before it}, {bn: dense after it}) for the batch norms that can be folded.

    Backward: the BN's only input is a convolution that feeds nothing else.
    Forward: the BN's only consumer is a Dense layer (a BN after an activation, as in
    the classifier head, folds into the next layer's weights instead).
    """
    layers = {l["name"]: l for l in config["layers"]}
    consumers = _consumers(config)
    backward, forward = {}, {}
    for layer in config["layers"]:
        if layer["class_name"] != "BatchNormalization" or not _channels_last(layer["config"]):
            continue
        name, inbound = layer["name"], _inbound_names(layer)
        after = consumers.get(name, [])
        if len(inbound) == 1 and layers[inbound[0]]["class_name"] in _CONVS and len(consumers[inbound[0]]) == 1:
            backward[name] = inbound[0]
        elif len(after) == 1 and layers[after[0]]["class_name"] == "Dense" and len(_inbound_names(layers[after[0]])) == 1:
            forward[name] = after[0]
    return backward, forward


def _bn_affine(bn) -> tuple[np.ndarray, np.ndarray]:
    """(scale, shift) such that BN(x) = x * scale + shift with the moving statistics."""
    cfg = bn.get_config()
    weights = [np.asarray(w) for w in bn.get_weights()]
    gamma = weights.pop(0) if cfg.get("scale", True) else None
    beta = weights.pop(0) if cfg.get("center", True) else None
    mean, var = weights
    scale = (gamma if gamma is not None else 1.0) / np.sqrt(var + cfg["epsilon"])
    return scale, (beta if beta is not None else 0.0) - mean * scale


def _folded_into_conv(conv, bn) -> list[np.ndarray]:
    scale, shift = _bn_affine(bn)
    kernel, *rest = [np.asarray(w) for w in conv.get_weights()]
    bias = rest[0] if rest else np.zeros_like(scale)
    if type(conv).__name__ == "DepthwiseConv2D":
        kernel = kernel * scale.reshape(kernel.shape[2], kernel.shape[3])
    else:
        kernel = kernel * scale
    return [kernel.astype(np.float32), (bias * scale + shift).astype(np.float32)]


def _folded_into_dense(dense, bn) -> list[np.ndarray]:
    scale, shift = _bn_affine(bn)
    kernel, *rest = [np.asarray(w) for w in dense.get_weights()]
    bias = rest[0] if rest else np.zeros(kernel.shape[1], np.float32)
    return [(kernel * scale[:, None]).astype(np.float32), (bias + shift @ kernel).astype(np.float32)]


def fold_batchnorms(model, keras_module):
    """A new model computing the same function (BN in inference mode) without the folded BN layers."""
    config = model.get_config()
    backward, forward = foldable_pairs(config)
    if not backward and not forward:
        return model
    layers = {l["name"]: l for l in config["layers"]}
    # References to a folded BN now point at what fed it: the conv, or the BN's own input.
    renamed = dict(backward) | {bn: _inbound_names(layers[bn])[0] for bn in forward}
    for layer in config["layers"]:
        if layer["name"] in backward.values() or layer["name"] in forward.values():
            layer["config"]["use_bias"] = True
        for node in layer["inbound_nodes"]:
            for ref in node:
                ref[0] = renamed.get(ref[0], ref[0])
    config["layers"] = [l for l in config["layers"] if l["name"] not in renamed]
    config["output_layers"] = [[renamed.get(o[0], o[0]), *o[1:]] for o in config["output_layers"]]
    folded = keras_module.Model.from_config(config)
    into_conv = {conv: bn for bn, conv in backward.items()}
    into_dense = {dense: bn for bn, dense in forward.items()}
    for layer in folded.layers:
        old = model.get_layer(layer.name)
        if layer.name in into_conv:
            layer.set_weights(_folded_into_conv(old, model.get_layer(into_conv[layer.name])))
        elif layer.name in into_dense:
            layer.set_weights(_folded_into_dense(old, model.get_layer(into_dense[layer.name])))
        else:
            layer.set_weights(old.get_weights())
    return folded
