"""The quantizer stage's Brain (``train_quantizer.py``; FocalCodec-Stream stage 4 too): compressor -> binary
spherical quantizer -> decompressor on frozen encoder features. The loss is the feature MSE (padding
masked) plus the quantizer's entropy loss; with a trained decoder, valid and test also resynthesize audio.
"""

import logging
from typing import ClassVar, NamedTuple

import speechbrain as sb
import torch

from utils.metrics import CodeUsage
from utils.training.brain import CodecBrain
from utils.training.data import TrainItems

logger = logging.getLogger(__name__)


class QuantizerOutput(NamedTuple):
    """What one forward pass produces (all (B, T, ...) with T the encoder frame count)."""

    feats: torch.Tensor  # (B, T, D) frozen encoder features, the target
    hyp_feats: torch.Tensor  # (B, T, D) decompressed features
    toks: torch.Tensor  # (B, T') tokens in [0, 2^code_dim)
    aux_loss: torch.Tensor  # () quantizer entropy loss
    lens: torch.Tensor  # (B,) relative lengths


class QuantizerStage(CodecBrain):
    """Trains compressor, quantizer and decompressor; the encoder and decoder (if any) stay frozen."""

    stage = "quantizer"
    trained_parts: ClassVar[dict[str, str]] = {
        "compressor": "compressor",
        "quantizer": "quantizer",
        "decompressor": "decompressor",
    }
    frozen_modules = ("encoder", "decoder")
    # With the feature cache, training reads the features alone (no audio)
    train_items = TrainItems(audio=False)

    def compute_forward(self, batch, stage: sb.Stage) -> QuantizerOutput:
        """Features -> latents -> binary codes (straight-through) -> features."""
        batch = batch.to(self.device)
        feats, inputs, lens = self.targets_and_inputs(batch, stage)
        lats = self.modules.compressor(inputs)[0]
        codes, toks, aux_loss = self.modules.quantizer(lats)
        # Up-scaling restores at least T frames (more when T is not a multiple of the factor)
        hyp_feats = self.modules.decompressor(codes)[0][:, : feats.shape[1]]
        return QuantizerOutput(feats, hyp_feats, toks, aux_loss, lens)

    def targets_and_inputs(self, batch, stage: sb.Stage) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, T, D) target features, (B, T', D) compressor input and (B,) relative lengths: here both are
        the frozen encoder's features (cached, or computed on the waveform)."""
        feats, lens = self.features(batch, stage)[:2]
        return feats, feats, lens

    def compute_objectives(self, predictions: QuantizerOutput, batch, stage: sb.Stage) -> torch.Tensor:
        """Masked feature MSE + entropy loss."""
        rec_loss = self.hparams.rec_loss(predictions.hyp_feats, predictions.feats, length=predictions.lens)
        loss = rec_loss + predictions.aux_loss
        self.track(rec_loss=rec_loss.detach(), aux_loss=predictions.aux_loss.detach())
        if stage != sb.Stage.TRAIN:
            self.code_usage.append(batch.id, predictions.toks, predictions.lens)
        return loss

    @torch.no_grad()
    def evaluate_batch(self, batch, stage: sb.Stage) -> torch.Tensor:
        """Loss and code usage; with a trained decoder also resynthesis from quantized (``hyp``) and
        target (``rec``) features, written next to the reference (``ref``)."""
        with self.evaluation_ctx:
            predictions = self.compute_forward(batch, stage)
            loss = self.compute_objectives(predictions, batch, stage)
        sig, lens = batch.sig
        signals = {"ref": sig}
        if self.hparams.decoder is not None:
            signals["hyp"] = self.synthesize(predictions.hyp_feats, sig.shape[-1])
            signals["rec"] = self.synthesize(predictions.feats, sig.shape[-1])
        self.score_and_save(batch.id, lens, **signals)
        return loss.detach().cpu()

    def on_stage_start(self, stage: sb.Stage, epoch: int | None = None) -> None:
        """Reset counters; valid/test count code usage over the whole set."""
        super().on_stage_start(stage, epoch)
        self.code_usage = CodeUsage(2**self.hparams.quantizer_code_dim)
        if self.quality is not None and self.hparams.decoder is None:
            logger.info("No --decoder_checkpoint: no resynthesized audio, so no audio-quality metrics")
            self.quality = None

    def evaluation_stats(self, stage: sb.Stage) -> dict[str, float]:
        """Code usage and entropy (%) over the whole set, and the audio-quality figures if scored."""
        return {
            "code_usage": self.code_usage.summarize("usage"),
            "code_entropy": self.code_usage.summarize("entropy"),
            **self.quality_stats(stage),
        }
