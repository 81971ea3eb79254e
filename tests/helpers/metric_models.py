"""Fixtures of the metric tests (not a test module): tiny local models saved in the real formats (a
SpeechMOS clone, Whisper, WavLM-SV) and a simulated offline machine.

Test modules load it with ``pytest_plugins = ("helpers.metric_models",)`` and never import it (pytest
rewrites its assertions only when it loads it first); the signal helpers are in ``metric_signals``."""

import json
from pathlib import Path

import pytest
import torch

import utils.metrics.common as common

# --------------------------------------------------------------------------------------------------------
# Tiny local models in the real formats
# --------------------------------------------------------------------------------------------------------

FAKE_HUBCONF = '''
"""A stand-in for SpeechMOS's hubconf: same entry point and call signature, tiny model."""
import os

import torch

dependencies = ["torch"]
HERE = os.path.dirname(os.path.abspath(__file__))


class FakeUTMOS(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.offset = torch.nn.Parameter(torch.zeros(()))
        self.seen = []

    def forward(self, wave, sr):
        self.seen.append((tuple(wave.shape), sr))
        energy = wave.pow(2).mean(dim=-1).clamp_min(1e-10).log10()
        return (3.0 + self.offset + 0.1 * energy).clamp(1.0, 5.0)


def utmos22_strong(progress=True, pretrained=True):
    with open(os.path.join(HERE, "loads.txt"), "a") as log:
        log.write("load\\n")
    model = FakeUTMOS()
    if pretrained:
        model.load_state_dict(torch.load(os.path.join(HERE, "weights.pt")))
    return model.eval()
'''


@pytest.fixture(scope="module")
def speechmos_dir(tmp_path_factory) -> Path:
    """A local 'SpeechMOS clone': hubconf.py with ``utmos22_strong`` and its weight file."""
    folder = tmp_path_factory.mktemp("SpeechMOS")
    (folder / "hubconf.py").write_text(FAKE_HUBCONF)
    torch.save({"offset": torch.tensor(0.5)}, folder / "weights.pt")
    torch.save({"offset": torch.tensor(1.0)}, folder / "other.pt")
    return folder


@pytest.fixture(scope="module")
def whisper_dir(tmp_path_factory) -> Path:
    """A tiny random Whisper (model, generation config, feature extractor, byte-level BPE tokenizer with
    Whisper's special tokens and a spelling ``normalizer.json``) saved with ``save_pretrained``."""
    from tokenizers import pre_tokenizers
    from transformers import (
        AddedToken,
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizer,
    )
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    folder = tmp_path_factory.mktemp("whisper-tiny-random")
    vocab = {char: i for i, char in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    tokenizer = WhisperTokenizer(vocab=vocab, merges=[])
    specials = ["<|endoftext|>", "<|startoftranscript|>", *(f"<|{code}|>" for code in LANGUAGES)]
    specials += ["<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nocaptions|>"]
    specials += ["<|notimestamps|>"]
    tokenizer.add_tokens(
        [AddedToken(t, special=True, normalized=False) for t in specials], special_tokens=True
    )
    WhisperProcessor(feature_extractor=WhisperFeatureExtractor(), tokenizer=tokenizer).save_pretrained(folder)
    (folder / "normalizer.json").write_text(json.dumps({"colour": "color"}))  # as the hub repos ship it

    ids = tokenizer.convert_tokens_to_ids
    eot, sot = ids("<|endoftext|>"), ids("<|startoftranscript|>")
    config = WhisperConfig(
        vocab_size=len(tokenizer), d_model=16, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32, num_mel_bins=80,
        max_source_positions=1500, max_target_positions=64, decoder_start_token_id=sot, pad_token_id=eot,
        bos_token_id=eot, eos_token_id=eot,
    )  # fmt: skip
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        decoder_start_token_id=sot, eos_token_id=eot, pad_token_id=eot, bos_token_id=eot, max_length=16,
        is_multilingual=True, lang_to_id={f"<|{code}|>": ids(f"<|{code}|>") for code in LANGUAGES},
        task_to_id={"translate": ids("<|translate|>"), "transcribe": ids("<|transcribe|>")},
        no_timestamps_token_id=ids("<|notimestamps|>"), suppress_tokens=[], begin_suppress_tokens=[eot],
    )  # fmt: skip
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def wavlm_sv_dir(tmp_path_factory) -> Path:
    """A tiny random ``WavLMForXVector`` (real conv stack and TDNN, narrow) via save_pretrained."""
    from transformers import WavLMConfig, WavLMForXVector

    folder = tmp_path_factory.mktemp("wavlm-sv-tiny-random")
    config = WavLMConfig(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, conv_dim=(8,) * 7,
        tdnn_dim=(8, 8, 8, 8, 16), xvector_output_dim=8, num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4, initializer_range=0.2,
    )  # fmt: skip
    torch.manual_seed(0)
    WavLMForXVector(config).save_pretrained(folder)
    return folder


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No network: every probe fails at once, the torch hub cache is empty."""
    monkeypatch.setattr(common, "unreachable", lambda url, timeout=0: "network unreachable (simulated)")
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "torch_hub"))
    return tmp_path / "hf_cache"
