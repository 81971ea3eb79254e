"""FocalCodec: the complete codec, waveform -> tokens -> waveform, offline or chunk by chunk.

Data flow for ``sig (B, N)`` at 16 kHz (shapes for the released 50 Hz models)::

    encoder       WavLM          sig    -> feats  (B, T, 1024)    50 Hz
    compressor    FocalEncoder   feats  -> lats   (B, T', bits)   unit L2 norm
    quantizer     BSQ            lats   -> toks   (B, T') int64, codes (B, T', bits) = ±1/sqrt(bits)
    decompressor  FocalDecoder   codes  -> qfeats (B, T'', 1024)  50 Hz again
    decoder       Vocos/WaveNeXt qfeats -> sig    (B, T'' * hop)  16 kHz (Vocos) or 24 kHz (WaveNeXt)

Every ``a_to_b`` method runs one stage or a composition of stages, checks its input and leaves the train/eval
mode and autograd alone (use ``model.eval()`` and ``torch.no_grad()`` for inference).

Causal models (``focalcodec_50hz_*_causal``) also code chunk by chunk: every transform takes one state per
stateful module after its main input, and returns the new states with ``return_state=True`` (upstream's
calling convention, see ``focalcodec.streaming``, whose ``CodecStream`` hides the states).

Checkpoints (``from_pretrained``, ``to_pretrained``, configs): see ``focalcodec.pretrained``.
"""

import copy
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import torch
import torch.nn.functional as F
from torch import nn

from focalcodec import __version__ as PACKAGE_VERSION
from focalcodec.audio import fit_length
from focalcodec.bsq import BinarySphericalQuantizer
from focalcodec.checks import (
    check_float,
    check_frames,
    check_length,
    check_matching_set,
    check_positive_int,
    check_signal,
    check_toks,
)
from focalcodec.focalnet import FocalDecoder, FocalEncoder
from focalcodec.knn import knn
from focalcodec.onnx_export import export_onnx
from focalcodec.pretrained import PARTS, PretrainedMixin
from focalcodec.scripting import scripted_copy
from focalcodec.streaming import State, chunk_frames, returned, run_module
from focalcodec.vocos import Vocos
from focalcodec.wavenext import WaveNeXt
from focalcodec.wavlm import WavLM

__all__ = ["REGISTRY", "FocalCodec"]

REGISTRY: dict[str, type[nn.Module]] = {
    cls.__name__: cls
    for cls in (BinarySphericalQuantizer, FocalDecoder, FocalEncoder, Vocos, WaveNeXt, WavLM)
}
"""The classes a ``*_name`` constructor argument can pick."""


def _check_registered(part: str, name: str) -> None:
    """``name`` is a key of :data:`REGISTRY` (``part`` names the constructor argument in the error)."""
    if name not in REGISTRY:
        raise ValueError(f"{part}_name={name!r} is not supported. Supported: {', '.join(REGISTRY)}")


def _input_dim(module: nn.Module) -> int:
    """Channels the module consumes: the input size of its first linear or convolution layer."""
    layer = next(m for m in module.modules() if isinstance(m, nn.Linear | nn.Conv1d))
    return layer.in_features if isinstance(layer, nn.Linear) else layer.in_channels


class FocalCodec(PretrainedMixin, nn.Module):
    """Low-bitrate speech codec: WavLM features, a focal-modulation compressor, a binary spherical
    quantizer (one token of ``log2(codebook_size)`` bits per frame), a decompressor and a vocoder.

    Each ``*_name`` picks a class of :data:`REGISTRY`, built with ``**(*_config or {})``. The sub-modules
    are the attributes (and state_dict prefixes) ``encoder``, ``compressor``, ``quantizer``,
    ``decompressor`` and ``decoder``.

    Arguments
    ---------
    encoder_name, encoder_config : the waveform -> features network (``WavLM``).
    compressor_name, compressor_config : features -> latents (``FocalEncoder``).
    quantizer_name, quantizer_config : latents -> tokens and codes (``BinarySphericalQuantizer``).
    decompressor_name, decompressor_config : codes -> features (``FocalDecoder``).
    decoder_name, decoder_config : features -> waveform (``WaveNeXt``, upstream's default and the causal
        models' decoder, or ``Vocos``, the released 50/25/12.5 Hz models' decoder).

    Example
    -------
    >>> model = FocalCodec.from_pretrained("lucadellalib/focalcodec_50hz").eval()  # doctest: +SKIP
    >>> with torch.no_grad():  # doctest: +SKIP
    ...     toks, codes, rec_sig = model(sig)  # sig: (B, N) at 16 kHz
    ...     state = []  # a causal model, chunk by chunk (see focalcodec.streaming)
    ...     for chunk in sig.split(model.chunk_size, dim=-1):
    ...         toks_i, codes_i, rec_i, *state = model(chunk, *state, return_state=True)
    """

    __version__ = PACKAGE_VERSION
    """This package's version (upstream's ``FocalCodec.__version__``)."""

    def __init__(
        self,
        encoder_name: str = "WavLM",
        encoder_config: Mapping[str, Any] | None = None,
        compressor_name: str = "FocalEncoder",
        compressor_config: Mapping[str, Any] | None = None,
        quantizer_name: str = "BinarySphericalQuantizer",
        quantizer_config: Mapping[str, Any] | None = None,
        decompressor_name: str = "FocalDecoder",
        decompressor_config: Mapping[str, Any] | None = None,
        decoder_name: str = "WaveNeXt",
        decoder_config: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self._config = {
            "encoder_name": encoder_name,
            "encoder_config": copy.deepcopy(dict(encoder_config or {})),
            "compressor_name": compressor_name,
            "compressor_config": copy.deepcopy(dict(compressor_config or {})),
            "quantizer_name": quantizer_name,
            "quantizer_config": copy.deepcopy(dict(quantizer_config or {})),
            "decompressor_name": decompressor_name,
            "decompressor_config": copy.deepcopy(dict(decompressor_config or {})),
            "decoder_name": decoder_name,
            "decoder_config": copy.deepcopy(dict(decoder_config or {})),
        }
        for part in PARTS:  # before building anything large
            _check_registered(part, self._config[f"{part}_name"])
        self.encoder = REGISTRY[encoder_name](**(encoder_config or {}))
        self.compressor = REGISTRY[compressor_name](**(compressor_config or {}))
        self.quantizer = REGISTRY[quantizer_name](**(quantizer_config or {}))
        self.decompressor = REGISTRY[decompressor_name](**(decompressor_config or {}))
        self.decoder = REGISTRY[decoder_name](**(decoder_config or {}))
        # input sizes, read once from the eager modules (``jit`` may replace them by ScriptModules)
        self._feats_dim = _input_dim(self.compressor)
        self._qfeats_dim = _input_dim(self.decoder)
        self.model_id: str | None = None
        """Where ``from_config``/``from_pretrained`` found the codec (``None`` when built otherwise)."""

    # ----------------------------------------------------------------------------------------------
    # Properties

    @property
    def sample_rate_input(self) -> int:
        """Sample rate (Hz) of the input waveform."""
        return self.encoder.sample_rate

    @property
    def sample_rate_output(self) -> int | float:
        """Sample rate (Hz) of the reconstructed waveform: input rate × decoder / encoder hop ratio."""
        rate = self.sample_rate_input * self.decoder.upsample_factor / self.encoder.downsample_factor
        return int(rate) if rate.is_integer() else rate

    @property
    def sample_rate(self) -> int:
        """The common input and output sample rate (Hz); an error if the two differ."""
        if self.sample_rate_input != self.sample_rate_output:
            raise RuntimeError(
                f"input ({self.sample_rate_input} Hz) and output ({self.sample_rate_output} Hz) sample rates "
                "differ: use sample_rate_input / sample_rate_output"
            )
        return self.sample_rate_input

    @property
    def token_rate(self) -> float:
        """Tokens per second: input rate / (encoder hop × compressor downsampling), e.g. 50, 25 or 12.5."""
        return self.sample_rate_input / (self.encoder.downsample_factor * self.compressor.downsample_factor)

    @property
    def bitrate(self) -> float:
        """Bits per second: token rate × bits per token (650 for the 50 Hz model)."""
        return self.token_rate * self.quantizer.dim

    @property
    def causal(self) -> bool:
        """True if encoder, compressor, decompressor and decoder are all causal (FocalCodec-Stream)."""
        return all(
            module.causal for module in (self.encoder, self.compressor, self.decompressor, self.decoder)
        )

    @property
    def chunk_size(self) -> int:
        """Input samples per streaming chunk (1280 for the released causal models)."""
        return self.encoder.chunk_size

    @property
    def latency(self) -> float | None:
        """Algorithmic latency in milliseconds (one chunk: 80.0 for the released causal models), ``None``
        for a non-causal model."""
        return 1000 * self.chunk_size / self.sample_rate_input if self.causal else None

    @property
    def codebook(self) -> torch.Tensor:
        """(codebook_size, code_dim) all codes, row ``i`` being the code of token ``i``."""
        return self.quantizer.codebook

    def info(self) -> dict[str, Any]:
        """The model at a glance, as upstream's ``info()``: ``model_id``, ``version``, the input and output
        sample rates, ``causal``, ``chunk_size`` (samples), ``latency`` (ms) and ``num_total_params`` (every
        state_dict value)."""
        return {
            "model_id": self.model_id,
            "version": self.__version__,
            "sample_rate_input": self.sample_rate_input,
            "sample_rate_output": self.sample_rate_output,
            "causal": self.causal,
            "chunk_size": self.chunk_size,
            "latency": self.latency,
            "num_total_params": sum(value.numel() for value in self.state_dict().values()),
        }

    # ----------------------------------------------------------------------------------------------
    # Encoding. States: see the module docstring of ``focalcodec.streaming``; empty = a new stream.

    def sig_to_feats(
        self,
        sig: torch.Tensor,
        encoder_state: State = (),
        length: torch.Tensor | None = None,
        return_state: bool = False,
    ) -> Any:
        """Encoder features.

        Arguments
        ---------
        sig : (B, N) float waveforms at ``sample_rate_input``.
        encoder_state : streaming state of the encoder (causal models; empty: a new stream).
        length : (B,) relative lengths in (0, 1] of padded signals (frames past them are masked; non-causal).
        return_state : also return the new encoder state.

        Returns
        -------
        (B, T, D) features, ``T = floor((N - 400) / 320) + 1`` for the non-causal models and ``ceil(N / 320)``
        for the causal ones; then the encoder state if ``return_state``.
        """
        check_signal(sig)
        if length is not None:
            check_length(length, sig.shape[0])
        chunk = chunk_frames(self.encoder, "encoder")
        feats, state = run_module(self.encoder, sig, encoder_state, "encoder_state", chunk, length=length)
        return returned([feats], [state], return_state)

    def feats_to_lats(
        self, feats: torch.Tensor, compressor_state: State = (), return_state: bool = False
    ) -> Any:
        """(B, T, D) features -> (B, T', code_dim) compressor latents with unit L2 norm (and the state)."""
        check_frames(feats, "feats", self._feats_dim)
        chunk = chunk_frames(self.compressor, "compressor")
        lats, state = run_module(self.compressor, feats, compressor_state, "compressor_state", chunk)
        return returned([F.normalize(lats, dim=-1)], [state], return_state)

    def sig_to_lats(
        self,
        sig: torch.Tensor,
        encoder_state: State = (),
        compressor_state: State = (),
        length: torch.Tensor | None = None,
        return_state: bool = False,
    ) -> Any:
        """(B, N) waveforms (and (B,) relative lengths) -> (B, T', code_dim) unit-norm latents."""
        feats, encoder_state = self.sig_to_feats(sig, encoder_state, length, return_state=True)
        lats, compressor_state = self.feats_to_lats(feats, compressor_state, return_state=True)
        return returned([lats], [encoder_state, compressor_state], return_state)

    def lats_to_toks(self, lats: torch.Tensor) -> torch.Tensor:
        """(B, T', code_dim) latents -> (B, T') int64 tokens (the sign pattern, MSB first)."""
        check_frames(lats, "lats", self.quantizer.dim)
        return self.quantizer.lats_to_toks(lats)

    def feats_to_toks(
        self, feats: torch.Tensor, compressor_state: State = (), return_state: bool = False
    ) -> Any:
        """(B, T, D) features -> (B, T') int64 tokens."""
        lats, compressor_state = self.feats_to_lats(feats, compressor_state, return_state=True)
        return returned([self.lats_to_toks(lats)], [compressor_state], return_state)

    def sig_to_toks(
        self,
        sig: torch.Tensor,
        encoder_state: State = (),
        compressor_state: State = (),
        length: torch.Tensor | None = None,
        return_state: bool = False,
    ) -> Any:
        """(B, N) waveforms (and (B,) relative lengths) -> (B, T') int64 tokens."""
        lats, *states = self.sig_to_lats(sig, encoder_state, compressor_state, length, return_state=True)
        return returned([self.lats_to_toks(lats)], states, return_state)

    def lats_to_codes(self, lats: torch.Tensor) -> torch.Tensor:
        """(B, T', code_dim) latents -> (B, T', code_dim) codes ``±1/sqrt(code_dim)``."""
        check_frames(lats, "lats", self.quantizer.dim)
        return self.quantizer.lats_to_codes(lats)

    def feats_to_codes(
        self, feats: torch.Tensor, compressor_state: State = (), return_state: bool = False
    ) -> Any:
        """(B, T, D) features -> (B, T', code_dim) codes."""
        lats, compressor_state = self.feats_to_lats(feats, compressor_state, return_state=True)
        return returned([self.lats_to_codes(lats)], [compressor_state], return_state)

    def sig_to_codes(
        self,
        sig: torch.Tensor,
        encoder_state: State = (),
        compressor_state: State = (),
        length: torch.Tensor | None = None,
        return_state: bool = False,
    ) -> Any:
        """(B, N) waveforms (and (B,) relative lengths) -> (B, T', code_dim) codes."""
        lats, *states = self.sig_to_lats(sig, encoder_state, compressor_state, length, return_state=True)
        return returned([self.lats_to_codes(lats)], states, return_state)

    def toks_to_codes(self, toks: torch.Tensor) -> torch.Tensor:
        """(B, T') integer tokens in ``[0, codebook_size)`` -> (B, T', code_dim) codes."""
        check_toks(toks, self.quantizer.codebook_size)
        return self.quantizer.toks_to_codes(toks)

    def codes_to_toks(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, T', code_dim) codes -> (B, T') int64 tokens."""
        check_frames(codes, "codes", self.quantizer.dim)
        return self.quantizer.codes_to_toks(codes)

    # ----------------------------------------------------------------------------------------------
    # Decoding

    def codes_to_qfeats(
        self, codes: torch.Tensor, decompressor_state: State = (), return_state: bool = False
    ) -> Any:
        """(B, T', code_dim) codes -> (B, T' * upsample_factor, D) decompressed features (and the state).

        For the 12.5 and 25 Hz models this can be a few frames more than the encoder produced.
        """
        check_frames(codes, "codes", self.quantizer.dim)
        chunk = chunk_frames(self.decompressor, "decompressor")
        qfeats, state = run_module(self.decompressor, codes, decompressor_state, "decompressor_state", chunk)
        return returned([qfeats], [state], return_state)

    def toks_to_qfeats(
        self, toks: torch.Tensor, decompressor_state: State = (), return_state: bool = False
    ) -> Any:
        """(B, T') integer tokens -> (B, T'', D) decompressed features."""
        return self.codes_to_qfeats(self.toks_to_codes(toks), decompressor_state, return_state)

    def lats_to_qfeats(
        self, lats: torch.Tensor, decompressor_state: State = (), return_state: bool = False
    ) -> Any:
        """(B, T', code_dim) latents -> (B, T'', D) decompressed features of their codes."""
        return self.codes_to_qfeats(self.lats_to_codes(lats), decompressor_state, return_state)

    def feats_to_qfeats(
        self,
        feats: torch.Tensor,
        compressor_state: State = (),
        decompressor_state: State = (),
        return_state: bool = False,
    ) -> Any:
        """(B, T, D) features -> (B, T'', D) features after compression, quantization and decompression."""
        codes, compressor_state = self.feats_to_codes(feats, compressor_state, return_state=True)
        qfeats, decompressor_state = self.codes_to_qfeats(codes, decompressor_state, return_state=True)
        return returned([qfeats], [compressor_state, decompressor_state], return_state)

    def sig_to_qfeats(
        self,
        sig: torch.Tensor,
        encoder_state: State = (),
        compressor_state: State = (),
        decompressor_state: State = (),
        length: torch.Tensor | None = None,
        return_state: bool = False,
    ) -> Any:
        """(B, N) waveforms (and (B,) relative lengths) -> (B, T'', D) decompressed features."""
        codes, *states = self.sig_to_codes(sig, encoder_state, compressor_state, length, return_state=True)
        qfeats, decompressor_state = self.codes_to_qfeats(codes, decompressor_state, return_state=True)
        return returned([qfeats], [*states, decompressor_state], return_state)

    def knn(
        self, input: torch.Tensor, matching_set: torch.Tensor, topk: int = 4, num_splits: int = 1
    ) -> torch.Tensor:
        """The ``k = min(topk, M)`` nearest rows (cosine distance) of ``matching_set`` to each input vector.

        Arguments
        ---------
        input : (..., D) vectors, e.g. (B, T, D) source-speaker features.
        matching_set : (M, D) vectors to choose from (e.g. ``sig_to_qfeats`` of the target speaker).
        topk : neighbours per vector.
        num_splits : consecutive pieces the set is searched in (memory), at most M.

        Returns
        -------
        (..., k, D) neighbours, nearest first (see ``focalcodec.knn``).
        """
        check_float(input, "input")
        check_matching_set(matching_set, input.shape[-1], num_splits)
        check_positive_int(topk, "topk")
        return knn(input, matching_set, topk, num_splits)

    def feats_to_sig(
        self,
        feats: torch.Tensor,
        decoder_state: State = (),
        matching_set: torch.Tensor | None = None,
        topk: int = 4,
        num_splits: int = 1,
        output_length: int | None = None,
        return_state: bool = False,
    ) -> Any:
        """Synthesise waveforms from features, optionally after kNN matching (voice conversion).

        Arguments
        ---------
        feats : (B, T, D) features.
        decoder_state : streaming state of the decoder (causal models; empty: a new stream).
        matching_set : (M, D) features; if given, every frame is first replaced by the mean of its ``topk``
            nearest rows (:meth:`knn`).
        topk, num_splits : see :meth:`knn`.
        output_length : cut the output to this many samples, or extend it by repeating the last sample.
        return_state : also return the new decoder state.

        Returns
        -------
        (B, output_length or T * upsample_factor) waveforms at ``sample_rate_output``, then the state.
        """
        if output_length is not None:
            check_positive_int(output_length, "output_length")
        check_frames(feats, "feats", self._qfeats_dim)
        if matching_set is not None:
            check_matching_set(matching_set, self._qfeats_dim, num_splits)
            feats = self.knn(feats, matching_set, topk, num_splits).mean(dim=-2)
        chunk = chunk_frames(self.decoder, "decoder")
        sig, state = run_module(self.decoder, feats, decoder_state, "decoder_state", chunk)
        return returned(
            [sig if output_length is None else fit_length(sig, output_length)], [state], return_state
        )

    def codes_to_sig(
        self,
        codes: torch.Tensor,
        decompressor_state: State = (),
        decoder_state: State = (),
        matching_set: torch.Tensor | None = None,
        topk: int = 4,
        num_splits: int = 1,
        output_length: int | None = None,
        return_state: bool = False,
    ) -> Any:
        """(B, T', code_dim) codes -> (B, output_length or T'' * upsample_factor) waveforms.

        See :meth:`feats_to_sig` for the other arguments.
        """
        qfeats, decompressor_state = self.codes_to_qfeats(codes, decompressor_state, return_state=True)
        sig, decoder_state = self.feats_to_sig(
            qfeats, decoder_state, matching_set, topk, num_splits, output_length, return_state=True
        )
        return returned([sig], [decompressor_state, decoder_state], return_state)

    def toks_to_sig(
        self,
        toks: torch.Tensor,
        decompressor_state: State = (),
        decoder_state: State = (),
        matching_set: torch.Tensor | None = None,
        topk: int = 4,
        num_splits: int = 1,
        output_length: int | None = None,
        return_state: bool = False,
    ) -> Any:
        """(B, T') integer tokens -> (B, output_length or T'' * upsample_factor) waveforms.

        Without ``output_length`` one second of 50 Hz tokens (49 frames) gives 15680 samples with Vocos.
        See :meth:`feats_to_sig` for the other arguments.
        """
        codes = self.toks_to_codes(toks)
        return self.codes_to_sig(
            codes,
            decompressor_state,
            decoder_state,
            matching_set,
            topk,
            num_splits,
            output_length,
            return_state,
        )

    # ----------------------------------------------------------------------------------------------
    # Round trip

    def forward(
        self,
        sig: torch.Tensor,
        encoder_state: State = (),
        compressor_state: State = (),
        decompressor_state: State = (),
        decoder_state: State = (),
        length: torch.Tensor | None = None,
        return_state: bool = False,
    ) -> Any:
        """Encode and decode.

        Arguments
        ---------
        sig : (B, N) float waveforms at ``sample_rate_input``.
        encoder_state, compressor_state, decompressor_state, decoder_state : streaming states (causal
            models; empty: a new stream).
        length : (B,) relative lengths in (0, 1] (non-causal models).
        return_state : also return the four new states.

        Returns
        -------
        toks : (B, T') int64 tokens.
        codes : (B, T', code_dim) codes.
        rec_sig : (B, int(N * sample_rate_output / sample_rate_input)) reconstruction (1920 samples for a
            1280-sample chunk of a released causal model), then the four states if ``return_state``.
        """
        codes, *states = self.sig_to_codes(sig, encoder_state, compressor_state, length, return_state=True)
        output_length = int(sig.shape[-1] * self.sample_rate_output / self.sample_rate_input)
        rec_sig, *decoder_states = self.codes_to_sig(
            codes, decompressor_state, decoder_state, output_length=output_length, return_state=True
        )
        return returned([self.codes_to_toks(codes), codes, rec_sig], [*states, *decoder_states], return_state)

    def sig_to_sig(
        self,
        sig: torch.Tensor,
        encoder_state: State = (),
        compressor_state: State = (),
        decompressor_state: State = (),
        decoder_state: State = (),
        length: torch.Tensor | None = None,
        return_state: bool = False,
    ) -> Any:
        """(B, N) waveforms -> their (B, N') reconstruction, as :meth:`forward` (and the four states)."""
        states = (encoder_state, compressor_state, decompressor_state, decoder_state)
        _, _, rec_sig, *states = self(sig, *states, length=length, return_state=True)
        return returned([rec_sig], states, return_state)

    def jit(self, classes: Sequence[type[nn.Module]] | None = None) -> "FocalCodec":
        """A copy whose modules run as TorchScript (this codec is untouched).

        Arguments
        ---------
        classes : script every submodule of these classes; by default the five parts (``encoder``,
            ``compressor``, ``quantizer``, ``decompressor``, ``decoder``). A module that does not script
            stays eager, with a warning. The codec's own methods stay Python.

        Returns
        -------
        The new codec: same outputs, offline and streaming.
        """
        return scripted_copy(self, PARTS, classes)

    def onnx(
        self,
        f: str | os.PathLike | BinaryIO,
        batch_size: int | None = None,
        chunk_size: int | None = None,
        return_state: bool = False,
        quantize: str | None = None,
        **kwargs: Any,
    ) -> Path | BinaryIO:
        """Export to ONNX: ``forward`` on whole signals, or (``return_state``, causal models) one streaming
        step that starts a fresh stream as PyTorch does. Run it with ``focalcodec.onnx_runtime.OnnxCodec``.

        Arguments
        ---------
        f : the ``.onnx`` file to write, or a binary file object (e.g. ``io.BytesIO``, as upstream's tests)
            for models whose weights fit in one file (under 1 GiB).
        batch_size : fixed batch size, or ``None`` for a dynamic batch axis.
        chunk_size : samples per call (stream: a multiple of :attr:`chunk_size`, the default); offline, a
            fixed input length instead of a dynamic time axis.
        return_state : export the streaming step, states as inputs ``input_state.i`` and outputs
            ``output_state.i``.
        quantize : ``"int8"``: int8 weights for the matrix products (ONNX Runtime's dynamic quantization,
            see ``focalcodec.onnx_quantize``); ``None``: float32.
        **kwargs : passed to ``torch.onnx.export`` (e.g. ``opset_version``).

        Returns
        -------
        The path written (or ``f``). Graphs, names and limits: see ``focalcodec.onnx_export``.
        """
        return export_onnx(self, f, batch_size, chunk_size, return_state, quantize, **kwargs)
