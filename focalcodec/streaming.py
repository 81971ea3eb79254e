"""Chunk-by-chunk (streaming) coding with a causal FocalCodec.

Upstream's calling convention (``FocalCodec`` transforms): after its main input, every transform takes one
positional state per stateful module it runs, then ``return_state=False``; an empty state (the default)
starts a stream, and with ``return_state=True`` the transform also returns the updated states, in the same
order, to pass to the next call::

    state = []
    for chunk in sig.split(codec.chunk_size, dim=-1):  # 1280 samples = 80 ms for the released models
        toks, codes, rec, *state = codec(chunk, *state, return_state=True)

Each state is a list: ``[curr_pos, left_contexts, kv_caches]`` for the encoder, ``[left_contexts]`` for the
compressor, decompressor and decoder (see the modules for the tensors). A call never modifies the states it is
given, so an old state can be kept to branch or rewind a stream.

A call whose input is not a whole number of a module's chunks (``chunk_size`` samples for the encoder; a
multiple of the down/upscale factors for the focal modules, of ``1 + lookahead_size`` frames for the
decompressor's refiner) computes what upstream computes for an unpadded last chunk, and *ends* that module's
stream: its returned state is an :class:`EndedState`, which every later call refuses with
:class:`StreamEndedError` (upstream silently goes on with misaligned chunks).

:class:`CodecStream` hides all of this: push samples in pieces of any size, get the tokens and audio of
every whole chunk, and ``flush`` the zero-padded rest at the end. :class:`CodecStreamServer` codes many
independent streams at once, joining and leaving at any chunk (``focalcodec.sessions``): their states are
stacked along the batch axis (:func:`stack_states`), the encoder's ``curr_pos`` becoming one per stream.
"""

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch import nn

from focalcodec.checks import check_float
from focalcodec.chunking import ChunkBuffer, StreamEndedError
from focalcodec.sessions import StreamServer

__all__ = [
    "CodecStream",
    "CodecStreamServer",
    "EndedState",
    "StreamEndedError",
    "StreamOutput",
    "chunk_frames",
    "run_module",
    "split_state",
    "stack_states",
]

State = Sequence[Any] | None
"""A module's streaming state: empty (``()``, ``[]`` or ``None``) for a new stream, else the list a call
returned."""

_STATE_SIZES = {"encoder_state": 3}
"""Entries of each state (1 where not listed)."""


class EndedState(list):
    """The state returned by a call whose input was not a whole number of chunks: a list like any state
    (same entries), which no later call accepts.

    Arguments
    ---------
    state : the module's state after the call.
    reason : what ended the stream, for the error message.
    """

    def __init__(self, state: Sequence[Any], reason: str) -> None:
        super().__init__(state)
        self.reason = reason


def chunk_frames(module: nn.Module, kind: str) -> int:
    """Input units (samples or frames) a causal module must get per call for the stream to go on exactly.

    ``kind`` is ``"encoder"`` (samples: ``chunk_size``), ``"compressor"`` (frames: the downscale factor),
    ``"decompressor"`` (code frames whose upscaled output fills whole refiner chunks) or ``"decoder"``.
    """
    if kind == "decompressor":
        return math.lcm(module.chunk_size, module.upsample_factor) // module.upsample_factor
    return module.chunk_size


def _first_tensor(state: Any) -> torch.Tensor | None:
    """The first tensor of a nested state, depth first."""
    if isinstance(state, torch.Tensor):
        return state if state.ndim > 0 else None
    for item in state if isinstance(state, list | tuple) else ():
        found = _first_tensor(item)
        if found is not None:
            return found
    return None


def _check_state(state: State, name: str, module: nn.Module, batch_size: int) -> list:
    """The state's entries to pass to ``module``: none for a new stream. Raises on a state that cannot
    continue: ended, of the wrong type or size, of another batch size, or for a non-causal module."""
    if isinstance(state, EndedState):
        raise StreamEndedError(
            f"{name} belongs to a stream that has ended ({state.reason}); start a new stream with an empty "
            "state (zero-pad the last chunk to go on)"
        )
    if state is None or (isinstance(state, list | tuple) and len(state) == 0):
        return []
    if not isinstance(state, list | tuple):
        hint = (
            ": pass matching_set, length, output_length, ... by keyword"
            if isinstance(state, torch.Tensor)
            else ""
        )
        raise TypeError(
            f"{name} must be the list a previous call returned with return_state=True, or empty for a new "
            f"stream; got {type(state).__name__}{hint}"
        )
    if not module.causal:
        raise ValueError(
            f"{name}: this {type(module).__name__} is not causal, so it cannot continue a stream; pass an "
            "empty state (streaming needs a causal model, e.g. focalcodec_50hz_*_causal)"
        )
    size = _STATE_SIZES.get(name, 1)
    if len(state) != size:
        raise ValueError(f"{name} must have {size} entries (as returned), got {len(state)}")
    tensor = _first_tensor(state)
    if tensor is not None and tensor.shape[0] != batch_size:
        raise ValueError(f"{name} is for a batch of {tensor.shape[0]}, the input has {batch_size} items")
    return list(state)


def run_module(
    module: nn.Module, input: torch.Tensor, state: State, name: str, chunk: int, **kwargs: Any
) -> tuple[torch.Tensor, list]:
    """Run one stateful module of a codec transform, continuing the stream of ``state``.

    Arguments
    ---------
    module : the encoder, compressor, decompressor or decoder.
    input : its input, (B, N) samples or (B, T, C) frames.
    state : its state (empty: a new stream).
    name : the state argument's name, for errors (``"encoder_state"``, ...).
    chunk : input units per call that keep the stream going (see :func:`chunk_frames`).
    **kwargs : passed to the module (``length``).

    Returns
    -------
    The module's main output and its new state, an :class:`EndedState` if ``input`` is not a whole number of
    chunks for a causal module.
    """
    outputs = module(input, *_check_state(state, name, module, input.shape[0]), **kwargs)
    new_state = list(outputs[1:])
    units = input.shape[1]
    if module.causal and units % chunk:
        what = "samples" if name == "encoder_state" else "frames"
        return outputs[0], EndedState(new_state, f"a call of {units} {what}, not a multiple of {chunk}")
    return outputs[0], new_state


def returned(outputs: Sequence[torch.Tensor], states: Sequence[list], return_state: bool) -> Any:
    """A transform's result: its output (or outputs), followed by the new states if ``return_state``."""
    if return_state:
        return (*outputs, *states)
    return outputs[0] if len(outputs) == 1 else tuple(outputs)


class StreamOutput(NamedTuple):
    """What :class:`CodecStream` returns for the chunks completed by a push (or a flush); without the batch
    axis, what :class:`CodecStreamServer` returns for a session."""

    toks: torch.Tensor
    """(B, t) int64 tokens."""
    codes: torch.Tensor
    """(B, t, code_dim) codes."""
    sig: torch.Tensor | None
    """(B, m) audio at ``sample_rate_output``, or ``None`` when only encoding."""


class CodecStream(ChunkBuffer):
    """Stream waveforms through a causal codec in pieces of any size, hiding the state.

    Every whole chunk of ``codec.chunk_size`` samples pushed so far is coded at once (tokens, codes and, if
    ``decode``, its audio); the rest waits for the next push. :meth:`flush` zero-pads the last partial chunk
    (as upstream's demo) and ends the stream. The concatenated outputs equal the offline (full-sequence)
    outputs of the codec on the zero-padded signal, however the signal is split. Runs under ``no_grad``; put
    the codec in eval mode first. ``push(samples)`` and ``flush()`` (see ``focalcodec.chunking.ChunkBuffer``)
    return a :class:`StreamOutput` for the chunks they complete (``t = 0`` when none).

    Arguments
    ---------
    codec : a causal ``FocalCodec``.
    decode : also synthesise audio (else tokens and codes only).
    matching_set, topk, num_splits : kNN voice conversion of the audio (see ``FocalCodec.toks_to_sig``).

    Example
    -------
    >>> stream = CodecStream(codec.eval())  # doctest: +SKIP
    >>> for piece in pieces:  # (B, n) at 16 kHz, any n  # doctest: +SKIP
    ...     toks, codes, audio = stream.push(piece)
    >>> toks, codes, audio = stream.flush()  # doctest: +SKIP
    """

    def __init__(
        self,
        codec: nn.Module,
        decode: bool = True,
        matching_set: torch.Tensor | None = None,
        topk: int = 4,
        num_splits: int = 1,
    ) -> None:
        if not codec.causal:
            raise ValueError(
                "CodecStream needs a causal codec (all of encoder, compressor, decompressor and decoder "
                "causal, e.g. focalcodec_50hz_*_causal); a non-causal model cannot be streamed"
            )
        super().__init__(codec.chunk_size)
        self.codec = codec
        self.decode = decode
        self.knn = {"matching_set": matching_set, "topk": topk, "num_splits": num_splits}
        # Several chunks per call are exact only when chunks tile the attention window (as upstream); a call
        # then holds at most one window of frames, which bounds the attention's memory.
        window, frames = codec.encoder.window_size, 1 + codec.encoder.lookahead_size
        self._call_size = codec.chunk_size * (max(1, window // frames) if window % frames == 0 else 1)
        self._states: list = [(), (), (), ()]

    def _check_samples(self, samples: torch.Tensor) -> torch.Tensor:
        check_float(samples, "samples")
        if samples.ndim != 2:
            raise ValueError(f"samples must have shape (B, n), got {tuple(samples.shape)}")
        return samples

    def _concat(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        return torch.cat([first, second], dim=1)

    def _zero_pad(self, rest: torch.Tensor, amount: int) -> torch.Tensor:
        return torch.nn.functional.pad(rest, (0, amount))

    @torch.no_grad()
    def _code(self, sig: torch.Tensor) -> StreamOutput:
        """Code (B, N) samples, a whole number of chunks, continuing the stream."""
        codec = self.codec
        toks, codes, audio = [], [], []
        for piece in sig.split(self._call_size, dim=1) if sig.shape[1] > 0 else ():
            codes_i, encoder_state, compressor_state = codec.sig_to_codes(
                piece, *self._states[:2], return_state=True
            )
            self._states[:2] = encoder_state, compressor_state
            codes.append(codes_i)
            toks.append(codec.codes_to_toks(codes_i))
            if self.decode:
                audio_i, decompressor_state, decoder_state = codec.codes_to_sig(
                    codes_i, *self._states[2:], **self.knn, return_state=True
                )
                self._states[2:] = decompressor_state, decoder_state
                audio.append(audio_i)
        if not codes:  # nothing completed: empty outputs of the right batch size, dtype and device
            empty_toks = torch.zeros(sig.shape[0], 0, dtype=torch.long, device=sig.device)
            empty_codes = sig.new_zeros(sig.shape[0], 0, codec.quantizer.dim)
            return StreamOutput(empty_toks, empty_codes, sig[:, :0] if self.decode else None)
        return StreamOutput(
            torch.cat(toks, dim=1), torch.cat(codes, dim=1), torch.cat(audio, dim=1) if self.decode else None
        )


def stack_states(states: Sequence[Any]) -> Any:
    """The states of several streams (each as a codec call returned it, batch 1) as one batched state: tensors
    concatenated along the batch axis, 0-dim ones (the encoder's ``curr_pos``) stacked into (B,)."""
    first = states[0]
    if isinstance(first, torch.Tensor):
        return torch.stack(list(states)) if first.ndim == 0 else torch.cat(list(states))
    return [stack_states(items) for items in zip(*states, strict=True)]


def split_state(state: Any, batch_size: int) -> list:
    """Inverse of :func:`stack_states`: the state of each of the ``batch_size`` streams of a batched state
    (a 0-dim ``curr_pos``, shared by a batch that started together, goes to every stream)."""
    if isinstance(state, torch.Tensor):
        if state.ndim == 0:
            return [state] * batch_size
        return list(state.unbind()) if state.ndim == 1 else list(state.split(1))
    per_item = [split_state(item, batch_size) for item in state]
    return [[items[i] for items in per_item] for i in range(batch_size)]


class CodecStreamServer(StreamServer):
    """Many streams through a causal codec at once (continuous batching, see ``focalcodec.sessions``):
    ``open()`` a session, ``push(session, samples)`` its (n,) samples at ``sample_rate_input``, ``step()``
    advances every session with a whole chunk pending by one batched call, ``pull(session)`` gives its
    :class:`StreamOutput` (``toks`` (t,), ``codes`` (t, code_dim), ``sig`` (m,)) so far, ``close(session)``
    ends it. Each session's outputs equal its stream coded alone, chunk by chunk (up to float rounding of
    the batched products). Runs under ``inference_mode``; put the codec in eval mode first.

    Arguments
    ---------
    codec : a causal ``FocalCodec``.
    max_batch : at most this many sessions per step (``None``: all).
    """

    def __init__(self, codec: nn.Module, max_batch: int | None = None) -> None:
        if not codec.causal:
            raise ValueError("CodecStreamServer needs a causal codec (e.g. focalcodec_50hz_*_causal)")
        super().__init__(codec.chunk_size, max_batch)
        self.codec = codec

    def _check_samples(self, samples: torch.Tensor) -> torch.Tensor:
        check_float(samples, "samples")
        if samples.ndim != 1:
            raise ValueError(f"a session's samples have shape (n,), got {tuple(samples.shape)}")
        return samples

    def _concat(self, pieces: list) -> torch.Tensor:
        return torch.cat(pieces)

    def _zero_pad(self, rest: torch.Tensor, amount: int) -> torch.Tensor:
        return torch.nn.functional.pad(rest, (0, amount))

    @torch.inference_mode()
    def _code(self, chunks: list, states: list) -> tuple[list, list]:
        state = [] if states[0] is None else stack_states(states)
        sig = torch.stack(chunks).to(next(self.codec.parameters()).device)
        toks, codes, audio, *new_state = self.codec(sig, *state, return_state=True)
        outputs = [StreamOutput(toks[i], codes[i], audio[i]) for i in range(len(chunks))]
        return outputs, split_state(new_state, len(chunks))

    def _join(self, outputs: list) -> StreamOutput:
        if not outputs:
            parameter = next(self.codec.parameters())
            toks = torch.zeros(0, dtype=torch.long, device=parameter.device)
            codes = parameter.new_zeros(0, self.codec.quantizer.dim)
            return StreamOutput(toks, codes, parameter.new_zeros(0))
        return StreamOutput(*(torch.cat(parts) for parts in zip(*outputs, strict=True)))
