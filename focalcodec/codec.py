"""FocalCodec: the complete codec, waveform -> tokens -> waveform, and its released checkpoint format.

Data flow for ``sig (B, N)`` at 16 kHz (shapes for the released models)::

    encoder       WavLM          sig    -> feats  (B, T, 1024)    50 Hz
    compressor    FocalEncoder   feats  -> lats   (B, T', 13)     unit L2 norm
    quantizer     BSQ            lats   -> toks   (B, T') int64, codes (B, T', 13) = ±1/sqrt(13)
    decompressor  FocalDecoder   codes  -> qfeats (B, T'', 1024)  50 Hz again
    decoder       Vocos          qfeats -> sig    (B, T'' * 320)

Every ``a_to_b`` method runs one stage or a composition of stages, checks its input and leaves the train/eval
mode and autograd alone (use ``model.eval()`` and ``torch.no_grad()`` for inference). Streaming (chunk by
chunk with carried state) is not exposed here; the causal sub-modules support it on their own.

A checkpoint is a folder (or a Hugging Face Hub repository) holding ``config.json``, the ten constructor
arguments, and ``model.safetensors`` (or ``model.pt``), a flat float32 state_dict. Checkpoints of the
Feb 2025 code (separate q/k/v projections) are remapped on load (see ``focalcodec.checkpoint``).
"""

import copy
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from focalcodec.audio import fit_length
from focalcodec.bsq import BinarySphericalQuantizer
from focalcodec.checkpoint import load_state_dict_file, remap_legacy_state_dict
from focalcodec.checks import (
    check_frames,
    check_length,
    check_matching_set,
    check_positive_int,
    check_signal,
    check_toks,
)
from focalcodec.focalnet import FocalDecoder, FocalEncoder
from focalcodec.hub import CONFIG_FILE, UPSTREAM_CONFIG_FILE, WEIGHT_FILES, locate
from focalcodec.vocos import Vocos
from focalcodec.wavlm import WavLM

__all__ = ["REGISTRY", "FocalCodec"]

REGISTRY: dict[str, type[nn.Module]] = {
    cls.__name__: cls for cls in (BinarySphericalQuantizer, FocalDecoder, FocalEncoder, Vocos, WavLM)
}
"""The classes a ``*_name`` constructor argument can pick."""

_PARTS = ("encoder", "compressor", "quantizer", "decompressor", "decoder")
_ARGUMENTS = tuple(f"{part}_{kind}" for part in _PARTS for kind in ("name", "config"))


def _check_registered(part: str, name: str) -> None:
    """``name`` is a key of :data:`REGISTRY` (``part`` names the constructor argument in the error)."""
    if name not in REGISTRY:
        hint = (
            " (WaveNeXt, upstream's default decoder, is not part of this re-implementation; the released "
            "50/25/12.5 Hz models use decoder_name='Vocos')"
            if name == "WaveNeXt"
            else ""
        )
        raise ValueError(f"{part}_name={name!r} is not supported{hint}. Supported: {', '.join(REGISTRY)}")


def _input_dim(module: nn.Module) -> int:
    """Channels the module consumes: the input size of its first linear or convolution layer."""
    layer = next(m for m in module.modules() if isinstance(m, nn.Linear | nn.Conv1d))
    return layer.in_features if isinstance(layer, nn.Linear) else layer.in_channels


def _apply_overrides(config: dict[str, Any], overrides: Mapping[str, Any]) -> None:
    """Set ``config[a][b]... = value`` in place for every dotted path ``"a.b..."`` of ``overrides``."""
    for path, value in overrides.items():
        keys = path.split(".")
        if keys[0] not in _ARGUMENTS:
            raise ValueError(f"override {path!r}: {keys[0]!r} is not one of {', '.join(_ARGUMENTS)}")
        node = config
        for key in keys[:-1]:
            if node.get(key) is None:
                node[key] = {}
            node = node[key]
            if not isinstance(node, dict):
                raise ValueError(f"override {path!r}: {key!r} is not a dict")
        node[keys[-1]] = value


class FocalCodec(nn.Module):
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
    decoder_name, decoder_config : features -> waveform (``Vocos``). The upstream default, ``WaveNeXt``,
        is not implemented: pass ``decoder_name="Vocos"``.

    Example
    -------
    >>> model = FocalCodec.from_pretrained("lucadellalib/focalcodec_50hz").eval()  # doctest: +SKIP
    >>> with torch.no_grad():  # doctest: +SKIP
    ...     toks, codes, rec_sig = model(sig)  # sig: (B, N) at 16 kHz
    """

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
        for part in _PARTS:  # before building anything large
            _check_registered(part, self._config[f"{part}_name"])
        self.encoder = REGISTRY[encoder_name](**(encoder_config or {}))
        self.compressor = REGISTRY[compressor_name](**(compressor_config or {}))
        self.quantizer = REGISTRY[quantizer_name](**(quantizer_config or {}))
        self.decompressor = REGISTRY[decompressor_name](**(decompressor_config or {}))
        self.decoder = REGISTRY[decoder_name](**(decoder_config or {}))

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
        """Input samples per streaming chunk of the encoder."""
        return self.encoder.chunk_size

    @property
    def latency(self) -> float:
        """Algorithmic latency in milliseconds (one chunk) if causal, ``inf`` otherwise."""
        return 1000 * self.chunk_size / self.sample_rate_input if self.causal else float("inf")

    @property
    def codebook(self) -> torch.Tensor:
        """(codebook_size, code_dim) all codes, row ``i`` being the code of token ``i``."""
        return self.quantizer.codebook

    # ----------------------------------------------------------------------------------------------
    # Encoding

    def sig_to_feats(self, sig: torch.Tensor, length: torch.Tensor | None = None) -> torch.Tensor:
        """Encoder features.

        Arguments
        ---------
        sig : (B, N) float waveforms at ``sample_rate_input``.
        length : (B,) relative lengths in (0, 1] of padded signals (frames past them are masked).

        Returns
        -------
        (B, T, D) features, ``T = floor((N - 400) / 320) + 1`` for the released (non-causal) models.
        """
        check_signal(sig)
        if length is not None:
            check_length(length, sig.shape[0])
        return self.encoder(sig, length=length)[0]

    def feats_to_lats(self, feats: torch.Tensor) -> torch.Tensor:
        """(B, T, D) features -> (B, T', code_dim) compressor latents with unit L2 norm."""
        check_frames(feats, "feats", _input_dim(self.compressor))
        return F.normalize(self.compressor(feats)[0], dim=-1)

    def sig_to_lats(self, sig: torch.Tensor, length: torch.Tensor | None = None) -> torch.Tensor:
        """(B, N) waveforms (and (B,) relative lengths) -> (B, T', code_dim) unit-norm latents."""
        return self.feats_to_lats(self.sig_to_feats(sig, length))

    def lats_to_toks(self, lats: torch.Tensor) -> torch.Tensor:
        """(B, T', code_dim) latents -> (B, T') int64 tokens (the sign pattern, MSB first)."""
        check_frames(lats, "lats", self.quantizer.dim)
        return self.quantizer.lats_to_toks(lats)

    def feats_to_toks(self, feats: torch.Tensor) -> torch.Tensor:
        """(B, T, D) features -> (B, T') int64 tokens."""
        return self.lats_to_toks(self.feats_to_lats(feats))

    def sig_to_toks(self, sig: torch.Tensor, length: torch.Tensor | None = None) -> torch.Tensor:
        """(B, N) waveforms (and (B,) relative lengths) -> (B, T') int64 tokens."""
        return self.lats_to_toks(self.sig_to_lats(sig, length))

    def lats_to_codes(self, lats: torch.Tensor) -> torch.Tensor:
        """(B, T', code_dim) latents -> (B, T', code_dim) codes ``±1/sqrt(code_dim)``."""
        check_frames(lats, "lats", self.quantizer.dim)
        return self.quantizer.lats_to_codes(lats)

    def feats_to_codes(self, feats: torch.Tensor) -> torch.Tensor:
        """(B, T, D) features -> (B, T', code_dim) codes."""
        return self.lats_to_codes(self.feats_to_lats(feats))

    def sig_to_codes(self, sig: torch.Tensor, length: torch.Tensor | None = None) -> torch.Tensor:
        """(B, N) waveforms (and (B,) relative lengths) -> (B, T', code_dim) codes."""
        return self.lats_to_codes(self.sig_to_lats(sig, length))

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

    def codes_to_qfeats(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, T', code_dim) codes -> (B, T' * upsample_factor, D) decompressed features.

        For the 12.5 and 25 Hz models this can be a few frames more than the encoder produced.
        """
        check_frames(codes, "codes", self.quantizer.dim)
        return self.decompressor(codes)[0]

    def toks_to_qfeats(self, toks: torch.Tensor) -> torch.Tensor:
        """(B, T') integer tokens -> (B, T'', D) decompressed features."""
        return self.codes_to_qfeats(self.toks_to_codes(toks))

    def lats_to_qfeats(self, lats: torch.Tensor) -> torch.Tensor:
        """(B, T', code_dim) latents -> (B, T'', D) decompressed features of their codes."""
        return self.codes_to_qfeats(self.lats_to_codes(lats))

    def feats_to_qfeats(self, feats: torch.Tensor) -> torch.Tensor:
        """(B, T, D) features -> (B, T'', D) features after compression, quantization and decompression."""
        return self.codes_to_qfeats(self.feats_to_codes(feats))

    def sig_to_qfeats(self, sig: torch.Tensor, length: torch.Tensor | None = None) -> torch.Tensor:
        """(B, N) waveforms (and (B,) relative lengths) -> (B, T'', D) decompressed features."""
        return self.codes_to_qfeats(self.sig_to_codes(sig, length))

    def knn(
        self, feats: torch.Tensor, matching_set: torch.Tensor, topk: int = 4, num_splits: int = 1
    ) -> torch.Tensor:
        """kNN regression (kNN-VC): replace every frame by the mean of its ``topk`` nearest rows of a set.

        Nearness is cosine similarity. The set is searched in ``num_splits`` pieces to bound memory.

        Arguments
        ---------
        feats : (B, T, D) features (e.g. of the source speaker).
        matching_set : (M, D) features to draw from (e.g. of the target speaker), shared by the batch.
        topk : neighbours averaged per frame (at most M are used).
        num_splits : pieces the similarity matrix is computed in, at most M.

        Returns
        -------
        (B, T, D) matched features.
        """
        dim = _input_dim(self.decoder)
        check_frames(feats, "feats", dim)
        check_matching_set(matching_set, dim, num_splits)
        check_positive_int(topk, "topk")

        queries = F.normalize(feats, dim=-1)
        similarities, indices, offset = [], [], 0
        for subset in matching_set.tensor_split(num_splits):
            nearest = (queries @ F.normalize(subset, dim=-1).T).topk(min(topk, subset.shape[0]), dim=-1)
            similarities.append(nearest.values)
            indices.append(nearest.indices + offset)
            offset += subset.shape[0]
        best = torch.cat(similarities, dim=-1).topk(min(topk, matching_set.shape[0]), dim=-1).indices
        return matching_set[torch.cat(indices, dim=-1).gather(-1, best)].mean(dim=-2)

    def feats_to_sig(
        self,
        feats: torch.Tensor,
        matching_set: torch.Tensor | None = None,
        topk: int = 4,
        num_splits: int = 1,
        output_length: int | None = None,
    ) -> torch.Tensor:
        """Synthesise waveforms from features, optionally after kNN matching (voice conversion).

        Arguments
        ---------
        feats : (B, T, D) features.
        matching_set : (M, D) features; if given, frames are first replaced by :meth:`knn`.
        topk, num_splits : see :meth:`knn`.
        output_length : cut the output to this many samples, or extend it by repeating the last sample.

        Returns
        -------
        (B, output_length or T * upsample_factor) waveforms at ``sample_rate_output``.
        """
        if output_length is not None:
            check_positive_int(output_length, "output_length")
        if matching_set is None:
            check_frames(feats, "feats", _input_dim(self.decoder))
        else:
            feats = self.knn(feats, matching_set, topk, num_splits)
        sig = self.decoder(feats)[0]
        return sig if output_length is None else fit_length(sig, output_length)

    def codes_to_sig(
        self,
        codes: torch.Tensor,
        matching_set: torch.Tensor | None = None,
        topk: int = 4,
        num_splits: int = 1,
        output_length: int | None = None,
    ) -> torch.Tensor:
        """(B, T', code_dim) codes -> (B, output_length or T'' * upsample_factor) waveforms.

        See :meth:`feats_to_sig` for the other arguments.
        """
        return self.feats_to_sig(self.codes_to_qfeats(codes), matching_set, topk, num_splits, output_length)

    def toks_to_sig(
        self,
        toks: torch.Tensor,
        matching_set: torch.Tensor | None = None,
        topk: int = 4,
        num_splits: int = 1,
        output_length: int | None = None,
    ) -> torch.Tensor:
        """(B, T') integer tokens -> (B, output_length or T'' * upsample_factor) waveforms.

        Without ``output_length`` one second of 50 Hz tokens (49 frames) gives 15680 samples, not 16000.
        See :meth:`feats_to_sig` for the other arguments.
        """
        return self.codes_to_sig(self.toks_to_codes(toks), matching_set, topk, num_splits, output_length)

    # ----------------------------------------------------------------------------------------------
    # Round trip

    def forward(
        self, sig: torch.Tensor, length: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encode and decode.

        Arguments
        ---------
        sig : (B, N) float waveforms at ``sample_rate_input``.
        length : (B,) relative lengths in (0, 1].

        Returns
        -------
        toks : (B, T') int64 tokens.
        codes : (B, T', code_dim) codes.
        rec_sig : (B, N * sample_rate_output / sample_rate_input) reconstruction, i.e. N samples at 16 kHz.
        """
        codes = self.sig_to_codes(sig, length)
        output_length = int(sig.shape[-1] * self.sample_rate_output / self.sample_rate_input)
        return self.codes_to_toks(codes), codes, self.codes_to_sig(codes, output_length=output_length)

    def sig_to_sig(self, sig: torch.Tensor, length: torch.Tensor | None = None) -> torch.Tensor:
        """(B, N) waveforms -> their (B, N') reconstruction, as :meth:`forward`."""
        return self(sig, length)[2]

    # ----------------------------------------------------------------------------------------------
    # Configs and checkpoints

    def to_config(self) -> dict[str, Any]:
        """The ten constructor arguments as a JSON-serialisable dict (``FocalCodec(**config)`` rebuilds)."""
        return json.loads(json.dumps(self._config))

    @classmethod
    def from_config(
        cls,
        config: str | os.PathLike | Mapping[str, Any],
        pretrained: bool = False,
        overrides: Mapping[str, Any] | None = None,
        **hf_kwargs,
    ) -> "FocalCodec":
        """Build a codec from a config, optionally loading the weights stored next to it.

        Arguments
        ---------
        config : a dict of constructor arguments, or where a checkpoint lives:
            * a local folder holding ``config.json`` (and ``model.safetensors`` or ``model.pt``);
            * a local ``*.json`` config file (weights in the same folder);
            * a local path stem ``dir/name`` for ``dir/name.json`` + ``dir/name.safetensors`` (upstream's
              local convention: ``FocalCodec.from_pretrained("my_codec/model")``);
            * a Hugging Face Hub repo id such as ``"lucadellalib/focalcodec_50hz"``, or
              ``"<repo>/<file>.json"`` (weights from the same repo).
        pretrained : also load the weights (strictly, remapping the legacy layout if needed).
        overrides : dotted paths to new values, e.g. ``{"encoder_config.max_cached_steps": 0}``.
        **hf_kwargs : passed to ``huggingface_hub.hf_hub_download`` (``revision``, ``cache_dir``, ...).

        Returns
        -------
        The codec, in training mode like any new module (call ``.eval()`` for inference).
        """
        if isinstance(config, Mapping):
            if pretrained:
                raise ValueError("pretrained=True needs a checkpoint location (folder, .json file or Hub id)")
            arguments = copy.deepcopy(dict(config))
        else:
            location = locate(config)
            config_file = location.fetch([location.config_file], **hf_kwargs)
            arguments = json.loads(config_file.read_text())
            if not isinstance(arguments, dict):
                raise ValueError(f"{config_file} must hold a JSON object of FocalCodec arguments")
        unknown = sorted(set(arguments) - set(_ARGUMENTS))
        if unknown:
            raise ValueError(
                f"unknown FocalCodec arguments {unknown}; expected some of {', '.join(_ARGUMENTS)}"
            )
        _apply_overrides(arguments, overrides or {})
        model = cls(**arguments)
        if pretrained:
            model.load_weights(location.fetch(location.weight_files, **hf_kwargs))
        return model

    @classmethod
    def from_pretrained(
        cls, config: str | os.PathLike, overrides: Mapping[str, Any] | None = None, **hf_kwargs
    ) -> "FocalCodec":
        """A pretrained codec from a local folder, local ``*.json`` or Hub repo (see :meth:`from_config`)."""
        return cls.from_config(config, pretrained=True, overrides=overrides, **hf_kwargs)

    def load_weights(self, path: str | os.PathLike) -> None:
        """Load a ``*.safetensors`` or ``torch.save``d state_dict (current or legacy layout), strictly."""
        state = load_state_dict_file(path)
        self.load_state_dict(remap_legacy_state_dict(state, self.state_dict().keys()))

    def to_pretrained(self, folder: str | os.PathLike) -> Path:
        """Save in the released format: ``config.json`` and ``model.safetensors`` (flat float32 keys), plus
        ``model.json``, the same config under the name upstream's local loader reads.

        The folder can be pushed to a model hub as is, and loads with ``from_pretrained(folder)`` here and
        ``FocalCodec.from_pretrained("<folder>/model")`` in the upstream ``focalcodec`` package (a local
        path is a stem there: ``<stem>.json`` + ``<stem>.safetensors``).

        Arguments
        ---------
        folder : created if needed.

        Returns
        -------
        The folder.
        """
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        config = json.dumps(self.to_config(), indent=2) + "\n"
        for name in (CONFIG_FILE, UPSTREAM_CONFIG_FILE):
            (folder / name).write_text(config)
        state = {
            key: value.detach().to(device="cpu", dtype=torch.float32).contiguous()
            for key, value in self.state_dict().items()
        }
        save_file(state, folder / WEIGHT_FILES[0], metadata={"format": "pt"})
        return folder
