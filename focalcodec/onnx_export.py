"""ONNX export of a FocalCodec (``FocalCodec.onnx``), with the TorchScript-based ``torch.onnx.export``.

Two kinds of graph, told apart by the model's ``focalcodec.graph`` metadata (see :data:`METADATA`):

* **offline** (``return_state=False``): ``sig (B, N) -> toks (B, T'), codes (B, T', bits), rec_sig (B, N')``,
  as ``FocalCodec.forward``. Dynamic axes ``batch`` (unless ``batch_size``), ``time`` (sig) and
  ``latent_time`` (toks, codes), and ``time`` (rec_sig) when the input and output rates are equal, else
  ``output_time``; a given ``chunk_size`` fixes the time axes instead.
* **stream** (``return_state=True``, causal models): one causal streaming step of a fixed ``chunk_size``
  samples, ``(sig, input_state.0..n-1) -> (toks, codes, rec_sig, output_state.0..n-1)``. The states are
  upstream's, flattened depth first: encoder ``curr_pos`` (int64, one per stream: (B,), where upstream's is
  0-dim, so that streams at different positions share a step), its convolution contexts and KV caches, then
  the compressor's, decompressor's and decoder's contexts. Axis 0 of every state is ``batch`` (unless
  ``batch_size``).

**The first chunk.** Upstream binds every state input to zeros for the first chunk, which is not a fresh
stream (the replicate-padded contexts start from zeros instead of the first frame). Here the stream model
holds two traced graphs of ``FocalCodec.forward``: the first chunk's (no state) and a later chunk's (with
state), in one ONNX ``If`` on ``max(input_state.0) == 0`` (``curr_pos``, 0 exactly at the start of a
stream: every call adds frames). The weights are stored once, outside the branches. So binding zeros to every
state input starts fresh streams, equal to PyTorch's from the first chunk on (the other state inputs are
then ignored), and states returned by previous steps continue them; a batch cannot mix the two (the runner
refuses it, ``OnnxStreamServer`` runs new streams apart).

Not exported: ``length`` (relative lengths of a padded batch), kNN matching (``matching_set``), ragged calls
(the stream graph takes exactly ``chunk_size`` samples per call: zero-pad the last chunk, as
``OnnxStream.flush`` does), and a streaming state for non-causal models.
"""

import contextlib
import hashlib
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import torch
import torch.nn.functional as F
from torch import nn

from focalcodec.checks import check_positive_int
from focalcodec.onnx_quantize import QUANTIZATIONS, quantize_graph
from focalcodec.onnx_runtime import METADATA, OUTPUTS
from focalcodec.vocos import ISTFT

__all__ = ["export_onnx", "flatten_state", "unflatten_state"]

_RESERVED = ("input_names", "output_names", "dynamic_axes", "dynamo", "args", "f", "kwargs")
_MAX_INLINE_BYTES = 1 << 30
"""Models with more initializer bytes keep their weights in ``<path>.data`` (protobuf's 2 GiB limit)."""


def flatten_state(state: Any) -> list[torch.Tensor]:
    """The tensors of a nested streaming state (lists of lists of tensors), depth first."""
    if isinstance(state, torch.Tensor):
        return [state]
    if not isinstance(state, list | tuple):
        raise TypeError(f"a streaming state holds lists and tensors, got {type(state).__name__}")
    return [tensor for item in state for tensor in flatten_state(item)]


def unflatten_state(flat: Sequence[torch.Tensor], template: Any) -> Any:
    """Inverse of :func:`flatten_state`: the ``flat`` tensors nested as ``template`` (a state)."""
    tensors = iter(flat)

    def rebuild(item: Any) -> Any:
        if isinstance(item, torch.Tensor):
            return next(tensors)
        return [rebuild(child) for child in item]

    nested = rebuild(template)
    if next(tensors, None) is not None:
        raise ValueError("more tensors than the state template holds")
    return nested


def _fit_length(sig: torch.Tensor, length: Any) -> torch.Tensor:
    """``focalcodec.audio.fit_length`` without a Python branch on sizes, so that a trace keeps the time axis
    dynamic: (B, n) -> (B, length), cut or right-padded by repeating the last sample."""
    return F.pad(sig[:, None], (0, length), mode="replicate")[:, 0, :length]


class _OfflineGraph(nn.Module):
    """``FocalCodec.forward`` on a whole signal, traceable at any length (``forward`` turns the output length
    into a Python ``int``, which a trace would freeze)."""

    def __init__(self, codec: nn.Module) -> None:
        super().__init__()
        self.codec = codec

    def forward(self, sig: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, N) -> toks (B, T'), codes (B, T', bits), rec_sig (B, N * upsample // downsample)."""
        codec = self.codec
        codes = codec.sig_to_codes(sig)
        length = sig.shape[-1] * codec.decoder.upsample_factor // codec.encoder.downsample_factor
        return codec.codes_to_toks(codes), codes, _fit_length(codec.codes_to_sig(codes), length)


class _StreamGraph(nn.Module):
    """One streaming call of ``FocalCodec.forward`` with the states flattened (none: a fresh stream)."""

    def __init__(self, codec: nn.Module, template: Any) -> None:
        super().__init__()
        self.codec = codec
        self.template = template

    def forward(self, sig: torch.Tensor, *flat_state: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(B, chunk) and the flat state -> toks, codes, rec_sig and the new flat state, whose first tensor,
        the encoder's ``curr_pos``, has one entry per stream (B,)."""
        state = unflatten_state(flat_state, self.template) if flat_state else []
        toks, codes, rec_sig, *new_state = self.codec(sig, *state, return_state=True)
        curr_pos, *rest = flatten_state(new_state)
        return (toks, codes, rec_sig, curr_pos.expand(sig.shape[0]), *rest)


@contextlib.contextmanager
def _export_mode(codec: nn.Module) -> Iterator[None]:
    """Eval mode, no autograd, and the ISTFTs' matrix-product path (no FFT or ``fold`` in ONNX); restored
    afterwards."""
    modes = [(module, module.training) for module in codec.modules()]
    istfts = [module for module in codec.modules() if isinstance(module, ISTFT)]
    codec.eval()
    try:
        for istft in istfts:
            istft.use_matmul = True
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", message="Constant folding - Only steps=1")  # exporter noise
            yield
    finally:
        for istft in istfts:
            istft.use_matmul = False
        for module, training in modes:
            module.training = training


def _trace_to_onnx(
    module: nn.Module,
    args: tuple[torch.Tensor, ...],
    names: tuple[list[str], list[str]],
    dynamic_axes: dict[str, dict[int, str]],
    export_kwargs: dict[str, Any],
    quantize: str | None,
) -> Any:
    """``torch.onnx.export`` (TorchScript-based) of ``module(*args)`` into memory: the ``onnx.ModelProto``
    (its weights quantized if ``quantize``, see ``focalcodec.onnx_quantize``)."""
    import onnx

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "graph.onnx"
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=names[0],
            output_names=names[1],
            dynamic_axes=dynamic_axes,
            dynamo=False,
            **{"opset_version": 17, **export_kwargs},
        )
        model = onnx.load(str(path))  # with any external data the exporter wrote beside it
    return model if quantize is None else quantize_graph(model, quantize)


def _check_arguments(
    codec: nn.Module, batch_size: int | None, chunk_size: int | None, return_state: bool, kwargs: dict
) -> None:
    """Errors for arguments ``export_onnx`` cannot honour."""
    if any(isinstance(module, torch.jit.ScriptModule) for module in codec.modules()):
        raise ValueError("onnx() traces the eager modules: export the original codec, not a jit() copy")
    reserved = sorted(set(kwargs) & set(_RESERVED))
    if reserved:
        raise ValueError(f"onnx() sets {', '.join(reserved)} itself (TorchScript-based export, fixed names)")
    for value, name in ((batch_size, "batch_size"), (chunk_size, "chunk_size")):
        if value is not None:
            check_positive_int(value, name)
    if not return_state:
        return
    if not codec.causal:
        raise ValueError(
            "return_state=True exports a streaming step, which needs a causal codec (encoder, compressor, "
            "decompressor and decoder all causal, e.g. focalcodec_50hz_*_causal)"
        )
    if chunk_size is not None and chunk_size % codec.chunk_size:
        raise ValueError(
            f"chunk_size ({chunk_size}) must be a multiple of the codec's chunk_size ({codec.chunk_size}) "
            "for a streaming step"
        )
    if codec.encoder.encoder.cache_size == 0:
        raise ValueError(
            "this encoder caches no frames (window_size <= 1 + lookahead_size), so curr_pos cannot mark the "
            "first chunk of a stream"
        )


def export_onnx(
    codec: nn.Module,
    path: str | Path | BinaryIO,
    batch_size: int | None = None,
    chunk_size: int | None = None,
    return_state: bool = False,
    quantize: str | None = None,
    **export_kwargs: Any,
) -> Path | BinaryIO:
    """Write ``codec`` as an ONNX model (see the module docstring for the graphs).

    Arguments
    ---------
    codec : a ``FocalCodec`` (its mode is restored afterwards).
    path : the ``.onnx`` file to write (weights over 1 GiB go to ``<path>.data`` beside it), or a binary file
        object (models under 1 GiB).
    batch_size : fixed batch size, or ``None`` for a dynamic ``batch`` axis (traced with 1).
    chunk_size : samples per call. Offline: fixes the time axis (default: dynamic, traced with
        ``512 * codec.chunk_size`` samples, as upstream). Stream: a multiple of ``codec.chunk_size`` (the
        default).
    return_state : export the causal streaming step instead of the offline graph.
    quantize : ``"int8"``: int8 matrix-product weights (``focalcodec.onnx_quantize``); ``None``: float32.
    **export_kwargs : passed to ``torch.onnx.export`` (default ``opset_version=17``); the names, axes and
        exporter are set here.

    Returns
    -------
    The path written (or the file object).
    """
    _check_arguments(codec, batch_size, chunk_size, return_state, export_kwargs)
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize={quantize!r} is not supported: choose one of {QUANTIZATIONS} or None")
    path = path if hasattr(path, "write") else Path(path)
    weight_bytes = sum(tensor.numel() * tensor.element_size() for tensor in codec.state_dict().values())
    if not isinstance(path, Path) and weight_bytes > _MAX_INLINE_BYTES:
        raise ValueError(
            f"the weights ({weight_bytes / 2**30:.1f} GiB) need a .data file beside the model: export to a "
            "path"
        )
    batch = 1 if batch_size is None else batch_size
    samples = chunk_size or (1 if return_state else 512) * codec.chunk_size
    parameter = next(codec.parameters())
    sig = torch.randn(batch, samples, generator=torch.Generator().manual_seed(0))
    sig = sig.to(parameter.device, parameter.dtype)  # traced where the codec is; the graph is device-free
    with _export_mode(codec):
        if return_state:
            model = _export_stream(codec, sig, batch_size is None, export_kwargs, quantize)
        else:
            model = _export_offline(
                codec, sig, batch_size is None, chunk_size is None, export_kwargs, quantize
            )
    _set_metadata(model, "stream" if return_state else "offline", samples, codec, quantize or "float32")
    _save(model, path)
    return path


def _export_offline(
    codec: nn.Module,
    sig: torch.Tensor,
    dynamic_batch: bool,
    dynamic_time: bool,
    export_kwargs: dict,
    quantize: str | None,
) -> Any:
    """The offline graph (``onnx.ModelProto``) traced on ``sig``."""
    axes: dict[str, dict[int, str]] = {
        name: {0: "batch"} if dynamic_batch else {} for name in ("sig", *OUTPUTS)
    }
    if dynamic_time:
        same_rate = codec.sample_rate_input == codec.sample_rate_output
        axes["sig"][1] = "time"
        axes["toks"][1] = axes["codes"][1] = "latent_time"
        axes["rec_sig"][1] = "time" if same_rate else "output_time"
    names = (["sig"], list(OUTPUTS))
    return _trace_to_onnx(_OfflineGraph(codec), (sig,), names, axes, export_kwargs, quantize)


def _export_stream(
    codec: nn.Module, sig: torch.Tensor, dynamic_batch: bool, export_kwargs: dict, quantize: str | None
) -> Any:
    """The stream model: ``If(input_state.0 == 0)`` over the first-chunk and later-chunk graphs."""
    results = codec(sig, return_state=True)
    template = results[len(OUTPUTS) :]
    flat = flatten_state(template)
    flat[0] = flat[0].expand(sig.shape[0])  # curr_pos: one per stream
    inputs = [f"input_state.{i}" for i in range(len(flat))]
    outputs = [*OUTPUTS, *(f"output_state.{i}" for i in range(len(flat)))]
    examples = dict(zip(["sig", *inputs], [sig, *flat], strict=True))
    examples.update(zip(outputs, [*results[: len(OUTPUTS)], *flat], strict=True))
    batched = {name for name, tensor in examples.items() if dynamic_batch and tensor.ndim > 0}
    graphs = []
    for names in (["sig"], ["sig", *inputs]):  # the first chunk (no state), then a later one
        axes = {name: {0: "batch"} for name in [*names, *outputs] if name in batched}
        args = tuple(examples[name] for name in names)
        graph = _trace_to_onnx(
            _StreamGraph(codec, template), args, (names, outputs), axes, export_kwargs, quantize
        )
        for value in graph.graph.output:  # the exporter's shape inference leaves the sizes symbolic
            _set_shape(value, examples[value.name].shape, value.name in batched)
        graphs.append(graph)
    return _merge_first_and_later(*graphs)


def _set_shape(value: Any, shape: Sequence[int], dynamic_batch: bool) -> None:
    """Give the ``onnx.ValueInfoProto`` ``value`` the sizes ``shape``, axis 0 named ``batch`` if dynamic."""
    dims = value.type.tensor_type.shape.dim
    del dims[:]
    for axis, size in enumerate(shape):
        if axis == 0 and dynamic_batch:
            dims.add().dim_param = "batch"
        else:
            dims.add().dim_value = size


def _tensor_key(tensor: Any) -> bytes:
    """A digest of an initializer's type, shape and values (equal tensors share one initializer)."""
    from onnx import numpy_helper

    digest = hashlib.sha256(f"{tensor.data_type}:{list(tensor.dims)}".encode())
    digest.update(numpy_helper.to_array(tensor).tobytes())
    return digest.digest()


class _SharedWeights:
    """The outer graph's initializers: one per distinct tensor of the branches."""

    def __init__(self) -> None:
        self.names: dict[bytes, str] = {}
        self.tensors: list[Any] = []

    def add(self, tensor: Any) -> str:
        """The outer name of ``tensor`` (an ``onnx.TensorProto``), adding it if new."""
        key = _tensor_key(tensor)
        if key not in self.names:
            shared = type(tensor)()
            shared.CopyFrom(tensor)
            shared.name = f"{tensor.name}~{len(self.tensors)}"
            self.names[key] = shared.name
            self.tensors.append(shared)
        return self.names[key]


def _as_branch(graph: Any, prefix: str, outer: set[str], weights: _SharedWeights) -> Any:
    """``graph`` as an ``If`` branch: no inputs (it reads the outer inputs by name), its initializers moved
    to ``weights``, every other name prefixed, and each output copied by an Identity."""
    from onnx import helper

    renamed = {tensor.name: weights.add(tensor) for tensor in graph.initializer}

    def rename(name: str) -> str:
        return name if name in outer or not name else renamed.get(name, prefix + name)

    nodes = []
    for node in graph.node:
        if any(attribute.g.node or attribute.graphs for attribute in node.attribute):
            raise NotImplementedError(f"nested graphs are not supported ({node.op_type})")
        copied = type(node)()
        copied.CopyFrom(node)
        copied.name = prefix + node.name
        copied.input[:] = [rename(name) for name in node.input]
        copied.output[:] = [rename(name) for name in node.output]
        nodes.append(copied)
    outputs = []
    for output in graph.output:
        result = type(output)()
        result.CopyFrom(output)
        result.name = f"{prefix}out/{output.name}"
        nodes.append(helper.make_node("Identity", [rename(output.name)], [result.name], name=result.name))
        outputs.append(result)
    return helper.make_graph(nodes, prefix.rstrip("/"), [], outputs)


def _merge_first_and_later(first: Any, later: Any) -> Any:
    """One model whose ``If`` on ``max(input_state.0) == 0`` runs ``first`` (fresh streams) or ``later``."""
    from onnx import TensorProto, helper

    outer = {value.name for value in later.graph.input}
    weights = _SharedWeights()
    then_branch = _as_branch(first.graph, "first/", outer, weights)
    else_branch = _as_branch(later.graph, "later/", outer, weights)
    zero = helper.make_tensor("stream/zero", TensorProto.INT64, [], [0])
    nodes = [
        helper.make_node("ReduceMax", ["input_state.0"], ["stream/latest"], name="stream/latest", keepdims=0),
        helper.make_node("Equal", ["stream/latest", zero.name], ["stream/fresh"], name="stream/fresh"),
        helper.make_node(
            "If",
            ["stream/fresh"],
            [value.name for value in later.graph.output],
            name="stream/first_chunk",
            then_branch=then_branch,
            else_branch=else_branch,
        ),
    ]
    graph = helper.make_graph(
        nodes,
        "focalcodec_stream",
        list(later.graph.input),
        list(later.graph.output),
        [zero, *weights.tensors],
    )
    return helper.make_model(graph, opset_imports=list(later.opset_import), ir_version=later.ir_version)


def _set_metadata(model: Any, kind: str, samples: int, codec: nn.Module, weights: str) -> None:
    """Record the graph kind, samples per call, sample rates and weight type in ``model.metadata_props``."""
    values = {
        "graph": kind,
        "chunk_size": samples,
        "sample_rate_input": codec.sample_rate_input,
        "sample_rate_output": codec.sample_rate_output,
        "weights": weights,
    }
    del model.metadata_props[:]
    for key, value in values.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = METADATA[key], str(value)


def _save(model: Any, path: Path | BinaryIO) -> None:
    """Check and write ``model``; its weights go to ``<path>.data`` if they are large."""
    import onnx

    large = sum(len(tensor.raw_data) for tensor in model.graph.initializer) > _MAX_INLINE_BYTES
    if not isinstance(path, Path):  # a file object: one file (export_onnx checked the size)
        onnx.checker.check_model(model)
        path.write(model.SerializeToString())
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    data = path.with_name(path.name + ".data")
    data.unlink(missing_ok=True)  # save_model would append to an old one
    onnx.save_model(model, str(path), save_as_external_data=large, location=data.name, size_threshold=1024)
    onnx.checker.check_model(str(path))  # by path: works for any size
