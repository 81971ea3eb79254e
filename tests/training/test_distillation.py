"""utils/training/distillation.py: what the distillation stages read of a teacher and of a student, and their
loss."""

import pytest
import torch
from helpers.reference import TINY_ENCODER

from focalcodec.wavlm import WavLM
from utils.runs import freeze_positions
from utils.training.distillation import (
    LayerOutputs,
    PositionalInput,
    layer_outputs,
    layer_weighted_mse,
    positional_input,
)


def encoder(causal: bool = False) -> WavLM:
    torch.manual_seed(0)
    return WavLM(**{**TINY_ENCODER, "causal": causal}).eval()


def test_the_positional_input_is_what_the_teacher_gives_its_positional_embedding():
    teacher = encoder()
    sig, lens = 0.1 * torch.randn(2, 16000), torch.tensor([1.0, 0.6])
    seen = []
    teacher.encoder.positional_embedding.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    calls = []
    teacher.encoder.layers[0].register_forward_pre_hook(lambda module, args: calls.append(1))
    with torch.no_grad():
        teacher(sig, length=lens)
        assert len(calls) == 1
        inputs = positional_input(teacher, sig, lens)
    assert len(calls) == 1  # the transformer layers are not run for it
    assert torch.equal(inputs, seen[0]) and inputs.shape == (2, 49, 64)
    assert torch.all(inputs[1, 30:] == 0) and torch.all(inputs[1, :29].abs().sum(-1) > 0)  # masked past 60 %
    assert torch.equal(PositionalInput(teacher)(sig, lens)[0], inputs)
    assert PositionalInput(teacher).sample_rate == 16000


def test_layer_outputs_end_with_the_encoder_output_and_carry_the_gradient():
    student = encoder(causal=True).train()
    sig = 0.1 * torch.randn(2, 16000)
    outputs = layer_outputs(student, sig)
    assert outputs.shape == (2, 50, 2, 64)  # causal: ceil(16000 / 320) frames
    torch.testing.assert_close(outputs[:, :, -1], student(sig)[0])
    outputs[:, :, 0].sum().backward()  # the first layer's output depends on the first layer's weights
    assert student.encoder.layers[0].feed_forward.in_proj.weight.grad.abs().sum() > 0
    assert not student.encoder.layers[1].feed_forward.in_proj.weight.grad.any()
    assert not student.encoder.layers[0]._forward_hooks  # the hooks are gone
    teacher = encoder()
    flat = LayerOutputs(teacher)(sig)[0]
    assert torch.equal(flat.unflatten(-1, (2, 64)), layer_outputs(teacher, sig))


def test_the_layer_weighted_loss_ignores_padding_and_is_the_original_without_it():
    torch.manual_seed(0)
    hyp, target = torch.randn(2, 10, 3, 4), torch.randn(2, 10, 3, 4)
    weights = [0.5, 0.75, 1.0]
    w = torch.tensor(weights)[None, None, :, None]
    full = layer_weighted_mse(hyp, target, torch.ones(2), weights)
    torch.testing.assert_close(full.loss, (w * (hyp - target) ** 2).mean())  # the original's formula
    torch.testing.assert_close(full.layer_mse, ((hyp - target) ** 2).mean(dim=(0, 1, 3)))
    # Padding does not count, however much there is
    short = layer_weighted_mse(hyp[:1, :6], target[:1, :6], torch.ones(1), weights)
    for frames in (8, 10):
        padded = torch.cat([hyp[:1, :6], torch.randn(1, frames - 6, 3, 4)], dim=1)
        result = layer_weighted_mse(padded, torch.cat([target[:1, :6], torch.zeros(1, frames - 6, 3, 4)], 1),
                                    torch.tensor([6 / frames]), weights)  # fmt: skip
        torch.testing.assert_close(result.loss, short.loss)
    with pytest.raises(ValueError, match="one weight per layer"):
        layer_weighted_mse(hyp, target, torch.ones(2), [1.0, 1.0])


def test_freeze_positions_freezes_the_two_embeddings_only():
    student = freeze_positions(encoder(causal=True))
    frozen = {name for name, p in student.named_parameters() if not p.requires_grad}
    assert frozen == {
        "encoder.positional_embedding.conv.weight",
        "encoder.positional_embedding.conv.bias",
        "encoder.relative_embedding.weight",
    }
