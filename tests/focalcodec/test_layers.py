"""The models' small building blocks (focalcodec/layers.py): 'same' and causal padding, the causal
convolution that resumes chunk by chunk, Snake and DynamicTanh."""

import pytest
import torch
import torch.nn.functional as F

from focalcodec.layers import DynamicTanh, Snake1d, causal_conv1d, pad_causal, pad_same, prepend_context


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
@pytest.mark.parametrize("kernel_size", [1, 4, 7])
def test_pad_same_is_pytorchs_same_padding(kernel_size: int) -> None:
    """Even kernels too: one more frame on the right."""
    x, weight = torch.randn(2, 3, 10), torch.randn(5, 3, kernel_size)
    assert pad_same(x, kernel_size).shape == (2, 3, 10 + kernel_size - 1)
    torch.testing.assert_close(
        F.conv1d(pad_same(x, kernel_size), weight), F.conv1d(x, weight, padding="same")
    )


def test_a_fresh_stream_repeats_its_first_frame_and_a_context_replaces_it() -> None:
    x = torch.arange(6.0).view(1, 2, 3)
    assert torch.equal(pad_causal(x, 2), torch.tensor([[[0.0, 0, 0, 1, 2], [3, 3, 3, 4, 5]]]))
    assert torch.equal(pad_causal(x, 0), x)
    context = torch.full((1, 2, 4), -1.0)
    assert torch.equal(prepend_context(x, context, 2), torch.cat([context, x], dim=-1))
    assert torch.equal(prepend_context(x, None, 2), pad_causal(x, 2))


@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("chunks", [[12], [1] * 12, [5, 2, 5], [3, 3, 6]])
def test_causal_conv1d_chunk_by_chunk_equals_one_call(stride: int, chunks: list[int]) -> None:
    """One call is a grouped convolution over the replicate-padded input; pieces of any size (shorter than
    the kernel included) give exactly its frames, the context carried from piece to piece."""
    x, weight, bias = torch.randn(2, 4, sum(chunks)), torch.randn(6, 2, 5), torch.randn(6)
    full, _ = causal_conv1d(x, None, weight, bias, stride, groups=2)
    expected = F.conv1d(pad_causal(x, 4), weight, bias, stride=stride, groups=2)
    torch.testing.assert_close(full, expected)
    pieces, context, start = [], None, 0
    for size in chunks:
        piece, context = causal_conv1d(x[..., start : start + size], context, weight, bias, stride, groups=2)
        pieces.append(piece)
        start += size
    torch.testing.assert_close(torch.cat(pieces, dim=-1), full)


def test_snake_and_dynamic_tanh() -> None:
    """Snake: ``x + sin(alpha x)^2 / alpha`` with one alpha per channel (channels last); DynamicTanh:
    ``tanh(alpha x)`` with one scalar alpha."""
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    snake = Snake1d(3).double()
    assert torch.equal(snake.alpha, torch.ones(3, 1, dtype=torch.float64))
    with torch.no_grad():
        snake.alpha.copy_(torch.tensor([[0.5], [2.0], [1.0]]))
    alpha = torch.tensor([0.5, 2.0, 1.0], dtype=torch.float64)
    torch.testing.assert_close(snake(x), x + torch.sin(alpha * x) ** 2 / alpha)
    tanh = DynamicTanh(0.25)
    assert torch.equal(tanh.alpha.detach(), torch.tensor([0.25]))
    torch.testing.assert_close(tanh(x.float()), torch.tanh(0.25 * x.float()))
