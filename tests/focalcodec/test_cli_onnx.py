"""The ``onnx`` command (``focalcodec/cli/to_onnx.py``): offline and streaming exports of tiny codecs that
ONNX Runtime runs as PyTorch does, the check catching a model that differs, and the usage errors."""

from pathlib import Path

import pytest
import torch
from helpers.cli_helpers import TINY_CONFIG, causal_config, run_cli, write_model

from focalcodec import cli
from focalcodec.cli.codec import Codec
from focalcodec.cli.to_onnx import check_onnx
from focalcodec.onnx_runtime import OnnxCodec


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("models")
    return {
        "non-causal": write_model(TINY_CONFIG, folder / "non_causal"),
        "causal": write_model(causal_config(), folder / "causal"),
    }


@pytest.mark.parametrize(("kind", "streaming"), [("non-causal", False), ("causal", False), ("causal", True)])
def test_export_runs_on_onnx_runtime_as_pytorch(capsys, models, tmp_path, kind, streaming):
    output = tmp_path / "sub" / "codec.onnx"
    flags = ["--streaming"] if streaming else []
    status, out = run_cli(capsys, "onnx", "--model", models[kind], "--output", output, *flags)
    assert status == 0, out
    assert output.is_file() and ("streaming step" if streaming else "offline graph") in out
    assert "tokens equal" in out and "audio max difference" in out
    onnx_codec = OnnxCodec(output)
    assert onnx_codec.streaming == streaming and onnx_codec.sample_rate_output == (
        24000 if kind == "causal" else 16000
    )


def test_the_check_catches_a_different_model(models, tmp_path):
    codec = Codec(str(models["causal"]), torch.device("cpu"))
    path = codec.model.onnx(tmp_path / "codec.onnx")
    same_tokens, difference = check_onnx(codec, path, streaming=False)
    assert same_tokens and difference < 1e-4
    with torch.no_grad():  # PyTorch's model changes after the export: the check must see it
        codec.model.decoder.head.proj.bias.add_(0.01)  # audio only
    same_tokens, difference = check_onnx(codec, path, streaming=False)
    assert same_tokens and difference > 1e-3
    with torch.no_grad():
        for parameter in codec.model.compressor.parameters():
            parameter.mul_(-1.0)
    assert not check_onnx(codec, path, streaming=False)[0]


def test_usage_errors(capsys, models, tmp_path):
    args = ["onnx", "--model", str(models["non-causal"]), "--output", str(tmp_path / "x.onnx")]
    assert cli.main([*args, "--streaming"]) == 2
    assert "is not causal" in capsys.readouterr().err
    args[2] = str(models["causal"])
    assert cli.main([*args, "--streaming", "--chunk_size", "1000"]) == 2
    assert "multiple of the model's chunk of 1280" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main([*args, "--batch_size", "0"])
    assert not (tmp_path / "x.onnx").exists()
