"""int8 weights for FocalCodec's ONNX graphs: ``FocalCodec.onnx(..., quantize="int8")``.

ONNX Runtime's dynamic quantization (``onnxruntime.quantization.quantize_dynamic``, a maintained library
rather than our own kernels): the weights of every matrix product (``MatMul``: the linear layers, which hold
nearly all of the codec's weights) are stored as int8, one scale per output channel, and each call quantizes
their input to 8 bits from its own range (no calibration set needed) before an integer product. At 4 frames
per streaming step these layers are bound by reading their weights from memory, so a quarter of the bytes is
most of the gain. Convolutions, norms, attention and the quantizer stay float.

A streaming model's two graphs (first chunk, later chunks) are quantized one by one before they are merged
(the quantizer does not look inside an ``If``'s branches); both quantize their shared weights identically,
so the merged model still stores each weight once.
"""

import logging
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["QUANTIZATIONS", "quantize_graph"]

QUANTIZATIONS = ("int8",)
"""The ``quantize`` values ``FocalCodec.onnx`` takes (besides ``None``, float32 weights)."""


def _weight_products(graph: Any) -> list[str]:
    """The ``MatMul`` nodes of ``graph`` whose second input is a 2-D weight (the linear layers; not the
    attention's products of activations, nor the positional convolution's batched product)."""
    matrices = {tensor.name for tensor in graph.initializer if len(tensor.dims) == 2}
    return [node.name for node in graph.node if node.op_type == "MatMul" and node.input[1] in matrices]


def quantize_graph(model: Any, quantize: str) -> Any:
    """``model`` (an ``onnx.ModelProto`` as ``torch.onnx.export`` wrote it) with int8 matrix-product weights.

    Arguments
    ---------
    model : the float graph.
    quantize : one of :data:`QUANTIZATIONS`.

    Returns
    -------
    The quantized ``onnx.ModelProto``.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize={quantize!r} is not supported: choose one of {QUANTIZATIONS} or None")
    with tempfile.TemporaryDirectory() as folder:
        source, target = Path(folder) / "float.onnx", Path(folder) / "int8.onnx"
        onnx.save_model(model, str(source), save_as_external_data=True, location="float.onnx.data")
        logging.disable(logging.WARNING)  # its advice to pre-process applies to image models
        try:
            quantize_dynamic(
                source,
                target,
                op_types_to_quantize=["MatMul"],
                nodes_to_quantize=_weight_products(model.graph),
                per_channel=True,
                weight_type=QuantType.QInt8,
                use_external_data_format=True,
            )
        finally:
            logging.disable(logging.NOTSET)
        return onnx.load(str(target))
