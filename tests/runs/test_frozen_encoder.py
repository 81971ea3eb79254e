"""The frozen WavLM6 encoder (utils/runs/frozen_encoder.py) and every source of its weights
(utils/runs/encoder_weights.py): files, official folders, legacy checkpoints, the cached download and the
offline message, causality, the random switch."""

import logging

import huggingface_hub.constants
import pytest
import torch
from helpers.reference import load_reference

from focalcodec.checkpoint import remap_legacy_state_dict
from focalcodec.codec import FocalCodec
from focalcodec.wavlm import WavLM
from utils.runs import (
    EncoderMismatchError,
    EncoderWeightsUnavailableError,
    load_frozen_encoder,
    stated_causality,
    wavlm6_state_dict,
)
from utils.runs.encoder_weights import CACHE_NAME

CONFIG = load_reference("focalcodec_e2e")["config"]


def tiny_encoder(seed: int) -> WavLM:
    torch.manual_seed(seed)
    return WavLM(**CONFIG["encoder_config"])


def assert_same_weights(module: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    assert module.state_dict().keys() == state.keys()
    for key, value in state.items():
        assert torch.equal(module.state_dict()[key], value), key


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def test_offline_without_weights_names_the_checkpoint_and_the_ways_out(offline, tmp_path):
    with pytest.raises(EncoderWeightsUnavailableError) as error:
        load_frozen_encoder(tiny_encoder(0), cache_folder=str(tmp_path))
    message = str(error.value)
    assert "lucadellalib/focalcodec_50hz" in message
    assert "--encoder_checkpoint" in message and "--encoder_random_init" in message
    assert str(tmp_path / CACHE_NAME) in message


def test_a_wavlm6_state_dict_file(tmp_path):
    state = tiny_encoder(1).state_dict()
    torch.save(state, tmp_path / "wavlm6.pt")
    encoder = tiny_encoder(0)
    source = load_frozen_encoder(encoder, checkpoint=str(tmp_path / "wavlm6.pt"))
    assert_same_weights(encoder, state)
    assert not encoder.training and not any(p.requires_grad for p in encoder.parameters())
    assert source == {"checkpoint": str((tmp_path / "wavlm6.pt").resolve())}  # what the run folder records


def test_the_cached_download_is_used_without_network(offline, tmp_path):
    state = tiny_encoder(2).state_dict()
    torch.save(state, tmp_path / CACHE_NAME)
    encoder = tiny_encoder(0)
    source = load_frozen_encoder(encoder, cache_folder=str(tmp_path))
    assert_same_weights(encoder, state)
    assert source == {"hub": "lucadellalib/focalcodec_50hz", "cache_folder": str(tmp_path)}


@pytest.mark.parametrize("target", ["folder", "safetensors"])
def test_an_official_codec_folder_or_weight_file(tmp_path, target):
    torch.manual_seed(3)
    folder = FocalCodec(**CONFIG).to_pretrained(tmp_path / "codec")
    source = folder if target == "folder" else folder / "model.safetensors"
    codec = FocalCodec.from_pretrained(folder)
    encoder = tiny_encoder(0)
    load_frozen_encoder(encoder, checkpoint=str(source))
    assert_same_weights(encoder, codec.encoder.state_dict())


def test_a_legacy_codec_checkpoint(tmp_path):
    torch.manual_seed(4)
    codec = FocalCodec(**CONFIG)
    legacy = {}
    for key, value in codec.state_dict().items():
        if ".qkv_proj." in key:
            for name, part in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3), strict=True):
                legacy[key.replace("qkv_proj", name)] = part.clone()
        else:
            legacy[key] = value
    legacy["encoder.encoder.norm.weight"] = torch.ones(CONFIG["encoder_config"]["dim"])
    torch.save(legacy, tmp_path / "model.pt")
    encoder = tiny_encoder(0)
    targets = [f"encoder.{key}" for key in encoder.state_dict()]
    expected = remap_legacy_state_dict({k: v for k, v in legacy.items() if k.startswith("encoder.")}, targets)
    load_frozen_encoder(encoder, checkpoint=str(tmp_path))
    assert_same_weights(encoder, {key.removeprefix("encoder."): value for key, value in expected.items()})
    assert_same_weights(encoder, codec.encoder.state_dict())


def test_random_init_is_loud_and_keeps_the_weights(caplog):
    encoder = tiny_encoder(5)
    before = {key: value.clone() for key, value in encoder.state_dict().items()}
    with caplog.at_level(logging.WARNING):
        assert load_frozen_encoder(encoder, random_init=True) == {"random_init": True}
    assert "RANDOMLY INITIALISED" in caplog.text
    assert_same_weights(encoder, before)


def test_weights_of_another_config_are_an_error(tmp_path):
    torch.save(
        WavLM(hidden_dims=[8] * 7, num_layers=1, dim=16, ffn_dim=16, num_heads=2).state_dict(),
        tmp_path / "w.pt",
    )
    with pytest.raises(RuntimeError, match="size mismatch"):
        load_frozen_encoder(tiny_encoder(0), checkpoint=str(tmp_path / "w.pt"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        wavlm6_state_dict(tmp_path / "missing.pt", tiny_encoder(0))


def test_a_causal_checkpoint_is_refused_for_a_non_causal_encoder_and_the_reverse(tmp_path):
    torch.manual_seed(3)
    causal = FocalCodec(**{**CONFIG, "encoder_config": {**CONFIG["encoder_config"], "causal": True}})
    folders = {
        True: causal.to_pretrained(tmp_path / "causal"),
        False: FocalCodec(**CONFIG).to_pretrained(tmp_path / "full"),
    }
    torch.save(causal.encoder.state_dict(), tmp_path / "bare.pt")
    assert stated_causality(folders[True]) is True and stated_causality(folders[True] / "model.safetensors")
    assert stated_causality(folders[False]) is False and stated_causality(tmp_path / "bare.pt") is None
    for encoder_causal in (False, True):
        encoder = WavLM(**{**CONFIG["encoder_config"], "causal": encoder_causal})
        with pytest.raises(EncoderMismatchError, match="same weight names and shapes") as error:
            load_frozen_encoder(encoder, checkpoint=str(folders[not encoder_causal]), role="the teacher")
        assert f"{folders[not encoder_causal]} holds a {'non-' if encoder_causal else ''}causal" in str(
            error.value
        )
        load_frozen_encoder(encoder, checkpoint=str(folders[encoder_causal]))  # the same kind loads
    load_frozen_encoder(tiny_encoder(0), checkpoint=str(tmp_path / "bare.pt"))  # says nothing: accepted
