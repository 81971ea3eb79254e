"""Binary spherical quantizers: the inference one in ``focalcodec.bsq`` and SpeechBrain's training one.

Parity vectors: ``tests/data/reference/bsq.pt`` (part A: focalcodec, part B: SpeechBrain).
"""

import math

import pytest
import torch
from helpers.reference import assert_close, assert_matches_listing, load_reference, read_listing
from speechbrain.lobes.models.bsq import BinarySphericalQuantizer as SpeechBrainBSQ

from focalcodec.bsq import BinarySphericalQuantizer

CODEBOOK_SIZE = 8192
DIM = 13


@pytest.fixture(scope="module")
def ref() -> dict:
    return load_reference("bsq")


@pytest.fixture
def quantizer(ref: dict) -> BinarySphericalQuantizer:
    q = BinarySphericalQuantizer(**ref["config"]["focalcodec"])
    q.load_state_dict(ref["state_dict"], strict=True)
    return q


@pytest.fixture
def sb_quantizer(ref: dict) -> SpeechBrainBSQ:
    sb = SpeechBrainBSQ(**ref["config"]["speechbrain"])
    sb.load_state_dict(ref["sb_state_dict"], strict=True)
    return sb


# --------------------------------------------------------------------------------------------------
# Part A: focalcodec inference quantizer vs. the reference


def test_reference_focalcodec(ref: dict, quantizer: BinarySphericalQuantizer) -> None:
    inputs, outputs = ref["inputs"], ref["outputs"]
    lats = inputs["lats_unit"]
    toks, codes = quantizer(lats)
    assert toks.dtype == torch.int64 and toks.shape == (2, 49)
    assert torch.equal(toks, outputs["toks"])
    assert_close(codes, outputs["codes"])
    assert_close(quantizer.lats_to_codes(lats), outputs["lats_to_codes"])
    assert torch.equal(quantizer.lats_to_toks(lats), outputs["lats_to_toks"])
    assert_close(quantizer.toks_to_codes(inputs["toks_in"]), outputs["toks_in_to_codes"])
    assert_close(quantizer.codebook, outputs["codebook"])


def test_msb_first(ref: dict, quantizer: BinarySphericalQuantizer) -> None:
    assert_close(quantizer.codebook[:4], ref["outputs"]["codebook_first_rows"])
    value = 1 / math.sqrt(DIM)
    expected = torch.full((DIM,), -value)
    expected[-1] = value  # token 1 sets only the least significant bit, which is the last dimension
    assert_close(quantizer.codebook[1], expected)
    assert quantizer.mask.tolist() == [2**j for j in range(DIM - 1, -1, -1)]
    assert quantizer.codes_to_toks(quantizer.codebook[2 ** (DIM - 1)]).item() == 2 ** (DIM - 1)


def test_attributes() -> None:
    q = BinarySphericalQuantizer()
    assert q.dim == 12 and q.codebook.shape == (4096, 12) and q.codebook.dtype == torch.float32
    assert math.isclose(q.codebook_value.item(), 1 / math.sqrt(12), rel_tol=1e-6)
    assert dict(q.named_buffers()).keys() == {"codebook_value", "mask", "codebook"}
    assert q.mask.dtype == torch.int64


@pytest.mark.parametrize("codebook_size", [0, 1, 3, 1000, 8191])
def test_codebook_size_must_be_power_of_two(codebook_size: int) -> None:
    with pytest.raises(ValueError, match="power of two"):
        BinarySphericalQuantizer(codebook_size)


def test_round_trips(quantizer: BinarySphericalQuantizer) -> None:
    toks = torch.arange(CODEBOOK_SIZE)
    codes = quantizer.toks_to_codes(toks)
    assert codes.shape == (CODEBOOK_SIZE, DIM) and codes.dtype == torch.float32
    assert torch.equal(quantizer.codes_to_toks(codes), toks)
    assert torch.equal(codes, quantizer.codebook)
    assert torch.equal(quantizer.lats_to_toks(codes), toks)
    assert torch.equal(quantizer(codes).codes, codes)  # codes are fixed points of the quantizer
    # Any latent with the sign pattern of a code quantizes to that code, whatever its scale.
    scaled = codes * torch.rand(CODEBOOK_SIZE, DIM).add(0.1) * 7
    assert torch.equal(quantizer(scaled).toks, toks)
    # Unit norm, and arbitrary leading shapes.
    assert_close(codes.norm(dim=-1), torch.ones(CODEBOOK_SIZE))
    assert torch.equal(quantizer.toks_to_codes(toks.view(2, 4, -1)), codes.view(2, 4, -1, DIM))


def test_zero_latents_map_to_negative_code(quantizer: BinarySphericalQuantizer) -> None:
    lats = torch.zeros(3, 5, DIM)
    lats[0, 0, 0] = 1e-30  # the smallest positive values still count as positive
    lats[0, 0, 1] = -0.0
    toks, codes = quantizer(lats)
    value = 1 / math.sqrt(DIM)
    assert toks[0, 0].item() == 2 ** (DIM - 1)
    assert (toks.flatten()[1:] == 0).all()
    assert codes[0, 0, 0].item() == pytest.approx(value)
    assert (codes.flatten()[1:] == -codes[0, 0, 0]).all()


def test_state_dicts(quantizer: BinarySphericalQuantizer, sb_quantizer: SpeechBrainBSQ) -> None:
    assert quantizer.state_dict() == {}
    assert_matches_listing(quantizer, read_listing("BinarySphericalQuantizer_focalcodec"))
    state = sb_quantizer.state_dict()
    assert list(state) == ["mask"] and state["mask"].dtype == torch.int64 and state["mask"].shape == (DIM,)
    assert_matches_listing(sb_quantizer, read_listing("BinarySphericalQuantizer_speechbrain"))
    assert torch.equal(state["mask"], quantizer.mask)


# --------------------------------------------------------------------------------------------------
# Part B: the installed SpeechBrain training quantizer vs. the reference (pins the SpeechBrain version)


def test_reference_speechbrain_train(ref: dict, sb_quantizer: SpeechBrainBSQ) -> None:
    outputs = ref["outputs"]
    sb_quantizer.train()
    xi = ref["inputs"]["x"].clone().requires_grad_()
    quantized, indices, aux_loss = sb_quantizer(xi)
    ((quantized * ref["inputs"]["w"]).sum() + aux_loss).backward()
    assert_close(quantized.detach(), outputs["sb_train_quantized"])
    assert torch.equal(indices, outputs["sb_train_indices"])
    assert aux_loss.shape == ()
    assert_close(aux_loss.detach(), outputs["sb_train_aux_loss"])
    assert_close(xi.grad, outputs["sb_train_input_grad"])


def test_reference_speechbrain_eval(ref: dict, sb_quantizer: SpeechBrainBSQ) -> None:
    outputs, x = ref["outputs"], ref["inputs"]["x"]
    sb_quantizer.eval()
    with torch.no_grad():
        quantized, indices, aux_loss = sb_quantizer(x)
        quantized_10, indices_10, aux_loss_10 = sb_quantizer(x, inv_temperature=10.0)
    assert_close(quantized, outputs["sb_eval_quantized"])
    assert torch.equal(indices, outputs["sb_eval_indices"])
    assert_close(aux_loss, outputs["sb_eval_aux_loss"])
    assert_close(quantized_10, outputs["sb_eval_invtemp10_quantized"])
    assert torch.equal(indices_10, outputs["sb_eval_indices"])
    assert_close(aux_loss_10, outputs["sb_eval_invtemp10_aux_loss"])
    assert not torch.allclose(aux_loss_10, aux_loss)  # the temperature does reach the loss


# --------------------------------------------------------------------------------------------------
# The two quantizers agree


@pytest.mark.parametrize("scale", [1.0, 1e-3, 50.0])
def test_quantizers_agree(
    ref: dict, quantizer: BinarySphericalQuantizer, sb_quantizer: SpeechBrainBSQ, scale: float
) -> None:
    # Un-normalised input (as in training) and the reference input; the SpeechBrain one normalises.
    x = torch.cat([ref["inputs"]["x"], torch.randn(4, 49, DIM, generator=torch.Generator().manual_seed(0))])
    x = x * scale
    with torch.no_grad():
        quantized, indices, _ = sb_quantizer(x)
    toks, codes = quantizer(x)
    assert torch.equal(indices, toks)
    assert_close(quantized, codes)
    assert torch.equal(quantizer(torch.nn.functional.normalize(x, dim=-1)).toks, toks)
    assert_close(sb_quantizer.codebook / math.sqrt(DIM), quantizer.codebook)
