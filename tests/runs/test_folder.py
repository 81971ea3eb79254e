"""The run folder as the contract between a stage and the tools after it (``utils/runs/folder.py``, and
``utils/runs/legacy.py`` for runs made before it, both read by ``utils/runs/read.py``): what each stage
records, that a run trained with a random encoder exports, evaluates and fine-tunes from its run folder
alone, and the decoder the quantizer stage listens through (``utils/runs/decoder.py``)."""

import json
import shutil

import pytest
import torch
from helpers.run_helpers import TINY_BSQ, TINY_VOCOS, assert_same_weights, copy_run, recipe_modules

from focalcodec.checkpoint import load_state_dict_file
from focalcodec.vocos import Vocos
from utils.runs import (
    ENCODER_FILE,
    PARTS_FILE,
    RunFolderError,
    codec_from_runs,
    encoder_fingerprint,
    init_from_pretrained,
    load_decoder,
    part_of,
    read_run,
)


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["quantizer", "decoder"])
def test_each_stage_records_its_parts(stage, quantizer_run, decoder_run, tmp_path):
    run, yaml_file, tiny = (
        (quantizer_run, "bsq.yaml", TINY_BSQ)
        if stage == "quantizer"
        else (decoder_run, "vocos.yaml", TINY_VOCOS)
    )
    record = json.loads((run / PARTS_FILE).read_text())
    modules = recipe_modules(yaml_file, tiny, tmp_path)  # what training built, same seed
    if stage == "quantizer":
        expected = {
            "encoder": "encoder",
            "compressor": "compressor",
            "quantizer": "quantizer",
            "decompressor": "decompressor",
        }
        assert record["best"] == {"min_key": "loss"}
        assert record["parts"]["quantizer"] == {
            "name": "BinarySphericalQuantizer",
            "config": {"codebook_size": 8192},
            "recoverable": "quantizer",
        }
    else:
        expected = {"encoder": "encoder", "decoder": "generator"}
        assert record["best"] == {"max_key": "epoch"}
    assert record["stage"] == stage and list(record["parts"]) == list(expected)
    for part, key in expected.items():
        assert record["parts"][part]["config"] == json.loads(json.dumps(part_of(modules[key]).config)), part
        assert record["parts"][part].get("recoverable") == (None if part == "encoder" else key)
    # the random encoder is saved, and it is the one training built (the YAML's, at the training seed)
    assert record["encoder_weights"] == {"random_init": True, "file": ENCODER_FILE}
    assert_same_weights(modules["encoder"], load_state_dict_file(run / ENCODER_FILE))
    assert record["encoder_sha256"] == encoder_fingerprint(modules["encoder"])


@pytest.mark.slow
def test_a_random_encoder_run_exports_evaluates_and_fine_tunes_from_its_run_folder_alone(
    quantizer_run, decoder_run, tmp_path
):
    """Without any YAML (hyperparams.yaml removed), the runs give the codec whose every tensor is the trained
    one: the saved random encoder, the checkpoints' compressor, decompressor and decoder."""
    quantizer = copy_run(quantizer_run, tmp_path / "bsq", keep_yaml=False)
    decoder = copy_run(decoder_run, tmp_path / "vocos", keep_yaml=False)
    codec = codec_from_runs(quantizer, decoder, allow_random_encoder=True)
    assert_same_weights(codec.encoder, load_state_dict_file(quantizer_run / ENCODER_FILE))
    checkpoint = read_run(quantizer).checkpoint()
    for part in ("compressor", "decompressor"):
        assert_same_weights(getattr(codec, part), load_state_dict_file(checkpoint / f"{part}.ckpt"))
    assert_same_weights(
        codec.decoder, load_state_dict_file(read_run(decoder).checkpoint() / "generator.ckpt")
    )
    # the same codec as from the complete runs (what evaluate_codec.py builds from QUANTIZER_RUN+DECODER_RUN)
    assert_same_weights(codec, codec_from_runs(quantizer_run, decoder_run, allow_random_encoder=True))
    # fine-tuning from the run folder alone: its parts and its encoder
    stage = recipe_modules("bsq.yaml", {**TINY_BSQ, "seed": 3}, tmp_path)
    pretrained = init_from_pretrained(quantizer, hparams=stage, compressor=stage["compressor"])
    assert_same_weights(stage["compressor"], codec.compressor)
    assert pretrained.encoder_weights == {"random_init": True}
    assert all(
        torch.equal(value, codec.encoder.state_dict()[key])
        for key, value in pretrained.state["encoder"].items()
    )


@pytest.mark.slow
def test_runs_without_parts_json_are_read_from_their_yaml(quantizer_run, decoder_run, tmp_path):
    for run in (quantizer_run, decoder_run):
        legacy = tmp_path / run.name
        legacy.mkdir()
        (legacy / "save").symlink_to(run / "save")
        shutil.copy(run / "hyperparams.yaml", legacy)
        old, new = read_run(legacy), read_run(run)
        assert old.stage == new.stage and old.best == new.best
        assert {name: (part.name, part.recoverable) for name, part in old.parts.items()} == {
            name: (part.name, part.recoverable) for name, part in new.parts.items()
        }
        for name, part in old.parts.items():  # the YAML's kwargs: the non-default settings at least
            assert all(new.parts[name].config[key] == value for key, value in part.config.items()), name
        assert old.random_encoder
        with pytest.raises(RunFolderError, match="run its training command once more"):
            old.encoder_state_dict()
    text = (
        (quantizer_run / "hyperparams.yaml")
        .read_text()
        .replace("encoder_random_init: true", "encoder_random_init: false")
    )
    (tmp_path / "bsq" / "hyperparams.yaml").write_text(
        text.replace("encoder_checkpoint:\n", "encoder_checkpoint: w.pt\n")
    )
    assert read_run(tmp_path / "bsq").encoder_weights == {"checkpoint": "w.pt"}


@pytest.mark.slow
def test_the_listening_decoder_comes_from_the_decoder_run(decoder_run, tmp_path):
    """From a run (folder, CKPT+ folder or generator.ckpt inside it) the decoder is built from its parts.json
    whatever the caller's settings; a bare file outside a run must fit the caller's decoder."""
    generator = next((decoder_run / "save").glob("CKPT+*/generator.ckpt"))
    wrong = Vocos(input_dim=64, num_layers=1, dim=16, ffn_dim=32)  # not the trained architecture
    for path in (decoder_run, generator.parent, generator):
        decoder = load_decoder(path, wrong)
        assert (
            decoder is not wrong
            and not decoder.training
            and not any(p.requires_grad for p in decoder.parameters())
        )
        assert_same_weights(decoder, load_state_dict_file(generator))
    bare = tmp_path / "generator.ckpt"
    shutil.copy(generator, bare)
    right = read_run(decoder_run).parts["decoder"].build()
    assert load_decoder(bare, right) is right
    with pytest.raises(RunFolderError, match="does not fit the decoder_\\* settings"):
        load_decoder(bare, wrong)
    with pytest.raises(RunFolderError, match="not a quantizer-stage run"):
        read_run(decoder_run).require_stage("quantizer")


def test_parts_rebuild_their_modules(tmp_path):
    modules = recipe_modules("bsq.yaml", TINY_BSQ, tmp_path)
    for key in ("encoder", "compressor", "quantizer", "decompressor", "decoder"):
        part = part_of(modules[key], key)
        rebuilt = part.build()
        if key == "quantizer":  # SpeechBrain's training BSQ -> the inference BSQ of the same size
            assert rebuilt.codebook_size == 2 ** modules[key].code_dim
            continue
        shapes = {name: tuple(value.shape) for name, value in modules[key].state_dict().items()}
        assert {name: tuple(value.shape) for name, value in rebuilt.state_dict().items()} == shapes, key
    with pytest.raises(TypeError, match="does not record its constructor config"):
        part_of(torch.nn.Linear(2, 2))
