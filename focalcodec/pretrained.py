"""The released checkpoint format of ``FocalCodec``: configs, ``from_pretrained`` and ``to_pretrained``.

A checkpoint is a folder (or a Hugging Face Hub repository) holding ``config.json``, the ten constructor
arguments, and ``model.safetensors`` (or ``model.pt``), a flat float32 state_dict. Checkpoints of the
Feb 2025 code (separate q/k/v projections) are remapped on load (see ``focalcodec.checkpoint``).
"""

import copy
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

import torch

from focalcodec.checkpoint import load_state_dict_file, remap_legacy_state_dict
from focalcodec.hub import CONFIG_FILE, UPSTREAM_CONFIG_FILE, WEIGHT_FILES, locate

__all__ = ["ARGUMENTS", "PARTS", "PretrainedMixin"]

PARTS = ("encoder", "compressor", "quantizer", "decompressor", "decoder")
"""The codec's parts: its children and state_dict prefixes."""
ARGUMENTS = tuple(f"{part}_{kind}" for part in PARTS for kind in ("name", "config"))
"""The ten constructor arguments, as ``config.json`` holds them."""


def _apply_overrides(config: dict[str, Any], overrides: Mapping[str, Any]) -> None:
    """Set ``config[a][b]... = value`` in place for every dotted path ``"a.b..."`` of ``overrides``."""
    for path, value in overrides.items():
        keys = path.split(".")
        if keys[0] not in ARGUMENTS:
            raise ValueError(f"override {path!r}: {keys[0]!r} is not one of {', '.join(ARGUMENTS)}")
        node = config
        for key in keys[:-1]:
            if node.get(key) is None:
                node[key] = {}
            node = node[key]
            if not isinstance(node, dict):
                raise ValueError(f"override {path!r}: {key!r} is not a dict")
        node[keys[-1]] = value


class PretrainedMixin:
    """Configs and checkpoints of ``FocalCodec`` (which keeps its constructor arguments in ``_config``)."""

    def to_config(self, config: str | os.PathLike | None = None, pretrained: bool = False) -> dict[str, Any]:
        """The ten constructor arguments as a JSON-serialisable dict (``FocalCodec(**config)`` rebuilds),
        optionally written to a file as upstream's ``to_config(config, pretrained)`` does.

        Arguments
        ---------
        config : a ``*.json`` file to write (``.json`` is appended if missing), or ``None`` to write nothing.
        pretrained : also write the weights beside it, ``<stem>.safetensors`` (flat float32 keys).

        Returns
        -------
        The arguments.
        """
        arguments = json.loads(json.dumps(self._config))
        if config is None:
            if pretrained:
                raise ValueError("pretrained=True writes the weights beside a config file: pass its path")
            return arguments
        path = Path(config)
        path = path if path.suffix == ".json" else path.with_name(path.name + ".json")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(arguments, indent=2) + "\n")
        if pretrained:
            self._save_weights(path.with_suffix(".safetensors"))
        return arguments

    @classmethod
    def from_config(
        cls,
        config: str | os.PathLike | Mapping[str, Any],
        pretrained: bool = False,
        overrides: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> Self:
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
        **kwargs : passed to ``huggingface_hub.hf_hub_download`` (``revision``, ``cache_dir``, ...).

        Returns
        -------
        The codec, in training mode like any new module (call ``.eval()`` for inference); its ``model_id`` is
        ``config`` when that names a location.
        """
        if isinstance(config, Mapping):
            if pretrained:
                raise ValueError("pretrained=True needs a checkpoint location (folder, .json file or Hub id)")
            arguments = copy.deepcopy(dict(config))
        else:
            location = locate(config)
            config_file = location.fetch([location.config_file], **kwargs)
            arguments = json.loads(config_file.read_text())
            if not isinstance(arguments, dict):
                raise ValueError(f"{config_file} must hold a JSON object of FocalCodec arguments")
        unknown = sorted(set(arguments) - set(ARGUMENTS))
        if unknown:
            raise ValueError(
                f"unknown FocalCodec arguments {unknown}; expected some of {', '.join(ARGUMENTS)}"
            )
        _apply_overrides(arguments, overrides or {})
        model = cls(**arguments)
        if pretrained:
            model.load_weights(location.fetch(location.weight_files, **kwargs))
        if not isinstance(config, Mapping):
            model.model_id = os.fspath(config)
        return model

    @classmethod
    def from_pretrained(
        cls, config: str | os.PathLike, overrides: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> Self:
        """A pretrained codec from a local folder, local ``*.json`` or Hub repo (see :meth:`from_config`)."""
        return cls.from_config(config, pretrained=True, overrides=overrides, **kwargs)

    def load_weights(self, path: str | os.PathLike) -> None:
        """Load a ``*.safetensors`` or ``torch.save``d state_dict (current or legacy layout), strictly."""
        state = load_state_dict_file(path)
        self.load_state_dict(remap_legacy_state_dict(state, self.state_dict().keys()))

    def to_pretrained(self, config: str | os.PathLike) -> Path:
        """Save config and weights.

        * ``config`` a folder (no ``.json`` suffix): the released format, ``config.json`` and
          ``model.safetensors`` (flat float32 keys), plus ``model.json``, the same config under the name
          upstream's local loader reads. The folder can be pushed to a model hub as is, and loads with
          ``from_pretrained(folder)`` here and ``FocalCodec.from_pretrained("<folder>/model")`` in the
          upstream ``focalcodec`` package (a local path is a stem there: ``<stem>.json`` +
          ``<stem>.safetensors``).
        * ``config`` a ``*.json`` file: upstream's layout, ``to_config(config, pretrained=True)``, i.e. that
          file and ``<stem>.safetensors`` beside it (loads with ``from_pretrained`` here and upstream).

        Arguments
        ---------
        config : the folder (created if needed) or the ``*.json`` file.

        Returns
        -------
        The folder, or the ``*.json`` file.
        """
        path = Path(config)
        if path.suffix == ".json":
            self.to_config(path, pretrained=True)
            return path
        path.mkdir(parents=True, exist_ok=True)
        text = json.dumps(self.to_config(), indent=2) + "\n"
        for name in (CONFIG_FILE, UPSTREAM_CONFIG_FILE):
            (path / name).write_text(text)
        self._save_weights(path / WEIGHT_FILES[0])
        return path

    def _save_weights(self, path: Path) -> None:
        """The state_dict as a ``*.safetensors`` file of flat float32 CPU tensors."""
        from safetensors.torch import save_file

        state = {
            key: value.detach().to(device="cpu", dtype=torch.float32).contiguous()
            for key, value in self.state_dict().items()
        }
        save_file(state, path, metadata={"format": "pt"})
