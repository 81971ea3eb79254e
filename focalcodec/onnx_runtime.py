"""Run a FocalCodec exported with ``FocalCodec.onnx`` on ONNX Runtime: numpy in, numpy out, no PyTorch.

* An **offline** model (``codec.onnx(path)``): ``OnnxCodec(path)(sig)`` gives ``toks, codes, rec_sig`` for
  whole signals, as ``FocalCodec.forward``.
* A **stream** model (``codec.onnx(path, return_state=True)``, causal codecs): :meth:`OnnxCodec.step` codes
  one chunk of ``chunk_size`` samples and returns the new state (start with :meth:`OnnxCodec.initial_state`,
  all zeros, which the graph treats as a fresh stream), or :meth:`OnnxCodec.stream` hides the state, as
  ``focalcodec.streaming.CodecStream`` does::

      codec = OnnxCodec("focalcodec_stream.onnx")
      stream = codec.stream()
      for piece in pieces:  # (B, n) float32 at codec.sample_rate_input, any n
          toks, codes, audio = stream.push(piece)
      toks, codes, audio = stream.flush()  # the zero-padded last chunk

  and :meth:`OnnxCodec.server` codes many streams at once, each with its own state, sessions joining and
  leaving at any chunk (``focalcodec.sessions``).

Inputs may be numpy arrays or anything ``numpy.asarray`` takes (CPU tensors, lists); they are cast to
float32. Outputs: ``toks`` int64 (B, T'), ``codes`` float32 (B, T', bits), ``rec_sig`` float32 (B, N').
"""

import os
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from focalcodec.chunking import ChunkBuffer, StreamEndedError
from focalcodec.sessions import StreamServer

__all__ = [
    "METADATA",
    "OUTPUTS",
    "OnnxCodec",
    "OnnxOutput",
    "OnnxStream",
    "OnnxStreamServer",
    "StreamEndedError",
]

OUTPUTS = ("toks", "codes", "rec_sig")
"""Names of the codec outputs, in order (the stream graph's states follow)."""

METADATA = {
    "graph": "focalcodec.graph",
    "chunk_size": "focalcodec.chunk_size",
    "sample_rate_input": "focalcodec.sample_rate_input",
    "sample_rate_output": "focalcodec.sample_rate_output",
    "weights": "focalcodec.weights",
}
"""Keys of the model's ``metadata_props``: the graph kind (``offline`` or ``stream``), the samples per call of
a stream graph (of the example for an offline graph), the input and output sample rates, and the weights
(``float32`` or ``int8``; files written before quantization existed have no such key: float32)."""


class OnnxOutput(NamedTuple):
    """What the codec returns (unpacks as ``toks, codes, rec_sig``)."""

    toks: np.ndarray
    """(B, T') int64 tokens."""
    codes: np.ndarray
    """(B, T', bits) float32 codes."""
    rec_sig: np.ndarray
    """(B, N') float32 audio at ``sample_rate_output``."""


def _as_signal(sig: Any, name: str) -> np.ndarray:
    """``sig`` as a float32 (B, N) array; a ``ValueError`` for other shapes."""
    array = np.asarray(sig, dtype=np.float32)
    if array.ndim != 2:
        hint = f": add the batch axis with {name}[None]" if array.ndim == 1 else ""
        raise ValueError(f"{name} must have shape (B, N), got {array.shape}{hint}")
    return array


def _rate(value: str) -> int | float:
    """A sample rate read from the metadata: an int when whole."""
    rate = float(value)
    return int(rate) if rate.is_integer() else rate


class OnnxCodec:
    """A FocalCodec ONNX model (offline or stream) in an ONNX Runtime session.

    Arguments
    ---------
    path : the ``.onnx`` file written by ``FocalCodec.onnx`` (with its ``.data`` file, if any, beside it).
    providers : ONNX Runtime execution providers (default: CPU).
    session_options : an ``onnxruntime.SessionOptions`` (threads, optimisation level, ...).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        providers: Sequence[str] | None = None,
        session_options: Any = None,
    ) -> None:
        import onnxruntime

        self.session = onnxruntime.InferenceSession(
            os.fspath(path),
            sess_options=session_options,
            providers=list(providers or ["CPUExecutionProvider"]),
        )
        metadata = self.session.get_modelmeta().custom_metadata_map
        missing = [key for name, key in METADATA.items() if key not in metadata and name != "weights"]
        if missing:
            raise ValueError(f"{path} was not written by FocalCodec.onnx (no {', '.join(missing)} metadata)")
        self.streaming = metadata[METADATA["graph"]] == "stream"
        """True for a stream model (:meth:`step`), False for an offline one (:meth:`forward`)."""
        self.chunk_size = int(metadata[METADATA["chunk_size"]])
        """Samples per :meth:`step` (stream), or of the export's example input (offline)."""
        self.sample_rate_input = _rate(metadata[METADATA["sample_rate_input"]])
        self.sample_rate_output = _rate(metadata[METADATA["sample_rate_output"]])
        self.weights = metadata.get(METADATA["weights"], "float32")
        """``float32``, or ``int8`` for a model exported with ``quantize="int8"``."""
        inputs = self.session.get_inputs()
        self._sig_shape = inputs[0].shape
        self._states = inputs[1:]

    @property
    def batch_size(self) -> int | None:
        """The batch size the model was exported for, ``None`` if dynamic."""
        size = self._sig_shape[0]
        return size if isinstance(size, int) else None

    def _run(self, sig: np.ndarray, state: Sequence[np.ndarray] = ()) -> list[np.ndarray]:
        """One session run: the outputs, in order."""
        batch, length = self._sig_shape
        if (isinstance(batch, int) and sig.shape[0] != batch) or (
            isinstance(length, int) and sig.shape[1] != length
        ):
            raise ValueError(f"this model takes sig of shape {tuple(self._sig_shape)}, got {sig.shape}")
        feeds = {"sig": sig, **{value.name: array for value, array in zip(self._states, state, strict=True)}}
        return self.session.run(None, feeds)

    def forward(self, sig: Any) -> OnnxOutput:
        """Code and decode whole signals (offline model).

        Arguments
        ---------
        sig : (B, N) waveforms at ``sample_rate_input``.

        Returns
        -------
        toks (B, T'), codes (B, T', bits), rec_sig (B, int(N * sample_rate_output / sample_rate_input)).
        """
        if self.streaming:
            raise ValueError(
                "this is a stream model (exported with return_state=True): use step() or stream(), or export "
                "the offline model with codec.onnx(path)"
            )
        return OnnxOutput(*self._run(_as_signal(sig, "sig")))

    __call__ = forward

    def _check_streaming(self) -> None:
        if not self.streaming:
            raise ValueError(
                "this is an offline model: call it on whole signals, or export a stream model with "
                "codec.onnx(path, return_state=True)"
            )

    def initial_state(self, batch_size: int = 1) -> list[np.ndarray]:
        """The state of a fresh stream of ``batch_size`` items: zeros (``input_state.0``, the encoder's cached
        frame count, is 0 exactly at the start of a stream, and the graph then ignores the other states)."""
        self._check_streaming()
        if self.batch_size is not None and batch_size != self.batch_size:
            raise ValueError(f"this model was exported for batches of {self.batch_size}, got {batch_size}")
        state = []
        for value in self._states:
            shape = [batch_size if isinstance(size, str) else size for size in value.shape]
            state.append(np.zeros(shape, dtype=np.int64 if value.type == "tensor(int64)" else np.float32))
        return state

    def step(
        self, chunk: Any, state: Sequence[np.ndarray] | None = None
    ) -> tuple[OnnxOutput, list[np.ndarray]]:
        """Code and decode the next chunk of a stream (stream model).

        Arguments
        ---------
        chunk : (B, chunk_size) samples at ``sample_rate_input``.
        state : the state the previous step returned, or ``None`` (:meth:`initial_state`) for a new stream.

        Returns
        -------
        The chunk's ``toks`` (B, t), ``codes`` (B, t, bits) and ``rec_sig`` (B, chunk_size * output rate /
        input rate), and the new state (a list of arrays, not modified by later steps).
        """
        self._check_streaming()
        chunk = _as_signal(chunk, "chunk")
        if state is None:
            state = self.initial_state(chunk.shape[0])
        if len(state) != len(self._states):
            raise ValueError(f"state must hold {len(self._states)} arrays (as returned), got {len(state)}")
        positions = np.asarray(state[0])
        if positions.size and positions.min() == 0 < positions.max():
            raise ValueError(
                "this batch mixes new streams (state zeros) with streams going on: run the new streams' "
                "first chunk as a batch of their own (OnnxStreamServer does)"
            )
        outputs = self._run(chunk, state)
        return OnnxOutput(*outputs[: len(OUTPUTS)]), outputs[len(OUTPUTS) :]

    def stream(self) -> "OnnxStream":
        """A new :class:`OnnxStream` (stream model)."""
        self._check_streaming()
        return OnnxStream(self)

    def server(self, max_batch: int | None = None) -> "OnnxStreamServer":
        """A new :class:`OnnxStreamServer`: many streams at once (stream model, dynamic batch axis)."""
        return OnnxStreamServer(self, max_batch)


class OnnxStream(ChunkBuffer):
    """Push samples in pieces of any size through a stream model; every whole chunk is coded at once and
    ``flush()`` codes the rest zero-padded to a chunk and ends the stream, as
    ``focalcodec.streaming.CodecStream``. ``push(samples)`` ((B, n) samples, any n >= 0) and ``flush()``
    return an :class:`OnnxOutput` for the chunks they complete (``t = 0`` when none).

    Arguments
    ---------
    codec : an :class:`OnnxCodec` holding a stream model.
    """

    def __init__(self, codec: OnnxCodec) -> None:
        codec._check_streaming()
        super().__init__(codec.chunk_size)
        self.codec = codec
        self._state: list[np.ndarray] | None = None

    def _check_samples(self, samples: Any) -> np.ndarray:
        return _as_signal(samples, "samples")

    def _concat(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        return np.concatenate([first, second], axis=1)

    def _zero_pad(self, rest: np.ndarray, amount: int) -> np.ndarray:
        return np.pad(rest, ((0, 0), (0, amount)))

    def _code(self, sig: np.ndarray) -> OnnxOutput:
        """Code (B, N) samples, a whole number of chunks, continuing the stream."""
        pieces = []
        for start in range(0, sig.shape[1], self.codec.chunk_size):
            output, self._state = self.codec.step(sig[:, start : start + self.codec.chunk_size], self._state)
            pieces.append(output)
        if not pieces:  # nothing completed: empty outputs of the right batch size
            bits = self.codec.session.get_outputs()[1].shape[-1]
            batch = sig.shape[0]
            return OnnxOutput(
                np.zeros((batch, 0), np.int64), np.zeros((batch, 0, bits), np.float32), sig[:, :0].copy()
            )
        return OnnxOutput(*(np.concatenate(parts, axis=1) for parts in zip(*pieces, strict=True)))


class OnnxStreamServer(StreamServer):
    """Many streams at once through a stream model with a dynamic batch axis (continuous batching, see
    ``focalcodec.sessions``): ``open()`` a session, ``push(session, samples)`` its (n,) samples, ``step()``
    advances every session with a whole chunk pending, ``pull(session)`` gives its :class:`OnnxOutput`
    (``toks`` (t,), ``codes`` (t, bits), ``rec_sig`` (m,)) so far, ``close(session)`` ends it.

    Arguments
    ---------
    codec : an :class:`OnnxCodec` holding a stream model exported without ``batch_size``.
    max_batch : at most this many sessions per step (``None``: all).
    """

    def __init__(self, codec: OnnxCodec, max_batch: int | None = None) -> None:
        codec._check_streaming()
        if codec.batch_size is not None:
            raise ValueError(
                f"this model was exported for batches of {codec.batch_size}: export it without batch_size "
                "(a dynamic batch axis) to serve several streams"
            )
        super().__init__(codec.chunk_size, max_batch)
        self.codec = codec

    def _check_samples(self, samples: Any) -> np.ndarray:
        array = np.asarray(samples, dtype=np.float32)
        if array.ndim != 1:
            raise ValueError(f"a session's samples have shape (n,), got {array.shape}")
        return array

    def _concat(self, pieces: list) -> np.ndarray:
        return np.concatenate(pieces)

    def _zero_pad(self, rest: np.ndarray, amount: int) -> np.ndarray:
        return np.pad(rest, (0, amount))

    def _code(self, chunks: list, states: list) -> tuple[list, list]:
        state = None if states[0] is None else [np.concatenate(parts) for parts in zip(*states, strict=True)]
        output, new_state = self.codec.step(np.stack(chunks), state)
        outputs = [OnnxOutput(*(array[i] for array in output)) for i in range(len(chunks))]
        return outputs, [[array[i : i + 1] for array in new_state] for i in range(len(chunks))]

    def _join(self, outputs: list) -> OnnxOutput:
        if not outputs:
            bits = self.codec.session.get_outputs()[1].shape[-1]
            return OnnxOutput(np.zeros(0, np.int64), np.zeros((0, bits), np.float32), np.zeros(0, np.float32))
        return OnnxOutput(*(np.concatenate(parts) for parts in zip(*outputs, strict=True)))
