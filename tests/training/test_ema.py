"""The exponential moving average of the trained weights (``ema_decay``, utils/training/ema.py): the update
is the formula, validation, test and the progress figures use the average, the checkpoint holds it and a
resumed run restores it. Export takes it: tests/runs/test_finetune_partial.py."""

import pytest
import speechbrain as sb
import torch
import yaml
from helpers.recipe_runner import (
    ROOT,
    build_brain,
    fit_brain,
    load_hparams,
    padded_batch,
    parse_train_log,
    recipe_brain,
    signal_dataset,
)
from helpers.run_helpers import speech

from train_decoder import Resynthesis
from utils.training.ema import WeightAverage
from utils.training.stages.quantizer import QuantizerStage

TINY_BSQ = yaml.safe_load((ROOT / "hparams" / "tiny" / "bsq.yaml").read_text())
TINY_VOCOS = yaml.safe_load((ROOT / "hparams" / "tiny" / "vocos.yaml").read_text())


def test_the_average_follows_the_formula():
    """decay 0.9, weights 1 then 3 then -1: the average is 1, 0.9 * 1 + 0.1 * 3 = 1.2, then
    0.9 * 1.2 + 0.1 * (-1) = 0.98; buffers are the module's own."""
    module = torch.nn.Linear(1, 1, bias=False)
    module.register_buffer("counter", torch.tensor([7]))
    average = WeightAverage(module, decay=0.9)
    for value, expected in ((1.0, 1.0), (3.0, 1.2), (-1.0, 0.98)):
        module.weight.data.fill_(value)
        average.update()
        assert average.state_dict()["weight"].item() == pytest.approx(expected, abs=1e-6)
    module.counter.fill_(8)
    assert average.state_dict()["counter"].item() == 8
    with average.swapped_in():
        assert module.weight.item() == pytest.approx(0.98, abs=1e-6)
    assert module.weight.item() == -1.0
    with pytest.raises(ValueError, match=r"ema_decay must be in \[0, 1\)"):
        WeightAverage(module, decay=1.0)


def parameters(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone() for key, value in module.named_parameters()}


def test_validation_and_test_use_the_average_and_a_resumed_run_restores_it(tmp_path):
    overrides = {**TINY_BSQ, "num_epochs": 1, "ema_decay": 0.5, "output_folder": str(tmp_path)}
    hparams = load_hparams("bsq.yaml", overrides)
    brain = recipe_brain(QuantizerStage, hparams)
    seen = []
    evaluate_batch = brain.evaluate_batch
    brain.evaluate_batch = lambda batch, stage: (
        seen.append((stage, parameters(hparams["compressor"]))) or evaluate_batch(batch, stage)
    )
    sig = speech()[0]
    fit_brain(brain, [sig[:8000], sig[8000:16000], sig[16000:24000]], [sig[24000:]])
    checkpoint = next(tmp_path.glob("save/CKPT+*"))
    averaged = torch.load(checkpoint / "ema_compressor.ckpt")
    trained = torch.load(checkpoint / "compressor.ckpt")
    assert seen[0][0] == sb.Stage.VALID and seen[0][1].keys() <= averaged.keys()
    assert all(torch.equal(value, averaged[key]) for key, value in seen[0][1].items())
    assert all(torch.equal(value, trained[key]) for key, value in parameters(hparams["compressor"]).items())
    assert any(not torch.equal(averaged[key], trained[key]) for key in trained)
    brain.evaluate(signal_dataset([sig[24000:]]), min_key="loss", test_loader_kwargs={"batch_size": 1})
    assert seen[-1][0] == sb.Stage.TEST
    assert all(torch.equal(value, averaged[key]) for key, value in seen[-1][1].items())

    resumed = recipe_brain(QuantizerStage, load_hparams("bsq.yaml", overrides))
    resumed.on_fit_start()
    average = resumed.averages["compressor"]
    assert average.loaded
    assert all(torch.equal(value, averaged[key]) for key, value in average.state_dict().items())


@pytest.mark.slow
def test_the_progress_figures_of_both_weights(tmp_path):
    torch.manual_seed(0)
    overrides = {**TINY_VOCOS, "ema_decay": 0.5, "ema_log_raw": True, "output_folder": str(tmp_path)}
    hparams = load_hparams("vocos.yaml", {**overrides, "progress_metrics": ["mel_distance"]})
    brain = build_brain(Resynthesis, hparams)
    sig = speech()[0]
    hparams["progress"].select(signal_dataset([sig[:16000]]))
    for _ in range(2):
        brain.fit_batch(padded_batch(sig[:8000], sig[8000:15600]))
    brain.log_progress()
    row = parse_train_log(tmp_path / "train_log.txt")[-1]
    assert row["steps"] == 2 and row["progress mel_distance"] != row["progress raw_mel_distance"]
