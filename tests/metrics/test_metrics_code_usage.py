"""Code usage and normalised entropy against a histogram counted by hand, padding excluded."""

import math

import pytest
import torch

from utils.metrics import CodeUsage


def test_hand_computed_histogram_with_padding():
    usage = CodeUsage(codebook_size=8)
    toks = torch.tensor([[0, 0, 1, 2, 7, 7], [3, 3, 5, 6, 6, 6]])
    usage.append(["a", "b"], toks, torch.tensor([4 / 6, 1.0]))  # the 7s of item a are padding
    # counts: 0 -> 2, 1 -> 1, 2 -> 1, 3 -> 2, 5 -> 1, 6 -> 3 (10 tokens, 6 of 8 codes)
    assert usage.counts.tolist() == [2, 1, 1, 2, 0, 1, 3, 0]
    probabilities = [0.2, 0.1, 0.1, 0.2, 0.1, 0.3]
    entropy = -sum(p * math.log(p) for p in probabilities) / math.log(8)
    assert usage.summarize("usage") == pytest.approx(75.0)
    assert usage.summarize("entropy") == pytest.approx(100 * entropy)

    usage.append(["c"], torch.tensor([[4, 7]]))  # no lens: nothing padded; adds codes 4 and 7
    assert usage.summarize() == pytest.approx({"usage": 100.0, "entropy": usage.summarize("entropy")})
    assert usage.ids == ["a", "b", "c"] and usage.num_scored == 3


def test_uniform_tokens_have_full_entropy_and_clear_forgets():
    usage = CodeUsage(codebook_size=4)
    usage.append(["a"], torch.tensor([[0, 1, 2, 3, 3, 2, 1, 0]]))
    assert usage.summarize() == pytest.approx({"usage": 100.0, "entropy": 100.0})
    usage.clear()
    assert usage.num_scored == 0
    assert usage.summarize() == {"usage": 0.0, "entropy": 0.0}
    usage.append(["b"], torch.tensor([[2, 2, 2]]))
    assert usage.summarize() == pytest.approx({"usage": 25.0, "entropy": 0.0})
