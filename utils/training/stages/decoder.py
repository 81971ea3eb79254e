"""The decoder stage's Brain (``train_decoder.py``; FocalCodec-Stream stage 1 too): a Vocos (or WaveNeXt)
generator trained adversarially on frozen encoder features, with HiFi-GAN discriminators.

Each step crops ``segment_size_feats`` feature frames per utterance, updates the discriminators (hinge
loss), then the generator (hinge adversarial + 54 x feature matching + 45 x mel L1) through the updated
discriminators. Valid and test resynthesize whole utterances.
"""

from typing import ClassVar, NamedTuple

import speechbrain as sb
import torch
from speechbrain.nnet.schedulers import update_learning_rate
from speechbrain.utils.distributed import if_main_process

from focalcodec.audio import fit_length
from utils.training.brain import CodecBrain
from utils.training.crop import cached_crop, crop_seconds, random_feature_crop
from utils.training.data import TrainItems


class GeneratorOutput(NamedTuple):
    """Generator output with its target, both (B, 1, N)."""

    hyp: torch.Tensor
    ref: torch.Tensor


class DecoderStage(CodecBrain):
    """Trains the Vocos generator and the HiFi-GAN discriminator; the encoder stays frozen."""

    stage = "decoder"
    trained_parts: ClassVar[dict[str, str]] = {"decoder": "generator"}
    # Training utterances hold a whole crop; with the feature cache each item reads only its crop
    train_items = TrainItems(min_seconds=crop_seconds, crop=cached_crop)

    def init_optimizers(self) -> None:
        """One AdamW per network, both checkpointed."""
        if self.grad_accumulation_factor != 1:
            raise ValueError("the decoder stage does not support grad_accumulation_factor != 1")
        self.optimizer_generator = self.opt_class(self.modules.generator.parameters())
        self.optimizer_discriminator = self.opt_class(self.modules.discriminator.parameters())
        self.optimizers_dict = {
            "optimizer_generator": self.optimizer_generator,
            "optimizer_discriminator": self.optimizer_discriminator,
        }
        if self.checkpointer is not None:
            for name, optimizer in self.optimizers_dict.items():
                self.checkpointer.add_recoverable(name, optimizer)

    def compute_forward(self, batch, stage: sb.Stage) -> GeneratorOutput:
        """Encode, crop (train only), generate; the output is fitted to the target length."""
        batch = batch.to(self.device)
        if hasattr(batch, "crop_feats"):  # training crops read alone from the feature cache and the audio
            feats, sig = batch.crop_feats.data, batch.crop_sig.data
        else:
            feats, sig = self._whole_or_cropped(batch, stage)
        hyp = fit_length(self.modules.generator(feats)[0], sig.shape[-1])
        return GeneratorOutput(hyp[:, None], sig[:, None])

    def _whole_or_cropped(self, batch, stage: sb.Stage) -> tuple[torch.Tensor, torch.Tensor]:
        """Whole-utterance features (cached, or the frozen encoder) and audio, cropped in training."""
        inputs = self.features(batch, stage)
        feats, sig = inputs.feats, inputs.sig
        if stage == sb.Stage.TRAIN and self.hparams.segment_size_feats is not None:
            num_frames, hop = self.hparams.segment_size_feats, self.hparams.generator_hop_length
            feats, sig = random_feature_crop(feats, sig, inputs.crop_lens, num_frames, hop)
        return feats, sig

    def discriminator_loss(self, out: GeneratorOutput) -> torch.Tensor:
        """Hinge loss of the discriminators on real audio and on (detached) generated audio."""
        scores_fake = self.modules.discriminator(out.hyp.detach())[0]
        scores_real = self.modules.discriminator(out.ref)[0]
        return self.hparams.discriminator_loss(scores_fake, scores_real)["D_loss"]

    def generator_loss(self, out: GeneratorOutput, stage: sb.Stage) -> dict[str, torch.Tensor]:
        """Adversarial, feature-matching and mel-L1 terms through frozen discriminators."""
        discriminator = self.modules.discriminator
        discriminator.requires_grad_(False)
        scores_fake, feats_fake = discriminator(out.hyp)
        _, feats_real = discriminator(out.ref)
        discriminator.requires_grad_(True)
        return self.hparams.generator_loss(stage, out.hyp, out.ref, scores_fake, feats_fake, feats_real)

    def _optimizer_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """Backward, unscale, clip at ``max_grad_norm`` (``None``: never, the original mode), step; a
        non-finite loss skips the update (and counts against ``nonfinite_patience``)."""
        if not torch.isfinite(loss):
            self.check_loss_isfinite(loss)
            optimizer.zero_grad(set_to_none=True)
            return
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(optimizer)
        if self.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(optimizer.param_groups[0]["params"], self.max_grad_norm)
        self.scaler.step(optimizer)
        optimizer.zero_grad(set_to_none=True)

    def fit_batch(self, batch) -> torch.Tensor:
        """Discriminator step, then generator step through the updated discriminator."""
        with self.training_ctx:
            out = self.compute_forward(batch, sb.Stage.TRAIN)
            d_loss = self.discriminator_loss(out)
        self._optimizer_step(d_loss, self.optimizer_discriminator)

        with self.training_ctx:
            g_losses = self.generator_loss(out, sb.Stage.TRAIN)
        self._optimizer_step(g_losses["G_loss"], self.optimizer_generator)

        self.scaler.update()
        self.optimizer_step += 1
        self._track_losses(d_loss, g_losses)
        if self.hparams.progress.due(self.optimizer_step):
            self.log_progress()
        return g_losses["G_loss"].detach().cpu()

    @torch.no_grad()
    def resynthesize(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, N) resynthesis and input of a batch, through the generator itself (not its DDP wrapper: the
        main process alone runs this, between training steps)."""
        batch = batch.to(self.device)
        inputs = self.features(batch, sb.Stage.VALID)
        return fit_length(self.hparams.generator(inputs.feats)[0], inputs.sig.shape[-1]), inputs.sig

    def log_progress(self) -> None:
        """Progress figures of the fixed validation utterances (utils/training/progress.py), main process
        only."""
        if not if_main_process():
            return
        generator = self.hparams.generator
        training = generator.training
        generator.eval()
        figures = self.hparams.progress.measure(self.resynthesize)
        generator.train(training)
        self.hparams.train_logger.log_progress(self.optimizer_step, figures)

    @torch.no_grad()
    def evaluate_batch(self, batch, stage: sb.Stage) -> torch.Tensor:
        """Whole-utterance resynthesis: generator loss (with the discriminator terms) and audio dumps."""
        with self.evaluation_ctx:
            out = self.compute_forward(batch, stage)
            g_losses = self.generator_loss(out, stage)
            d_loss = self.discriminator_loss(out)
        self._track_losses(d_loss, g_losses)
        lens = batch.sig[1]
        self.score_and_save(batch.id, lens, hyp=out.hyp[:, 0], ref=out.ref[:, 0])
        return g_losses["G_loss"].detach().cpu()

    def _track_losses(self, d_loss: torch.Tensor, g_losses: dict[str, torch.Tensor]) -> None:
        self.track(
            D_loss=d_loss.detach(),
            mel_loss=g_losses["G_l1_spec_loss"].detach(),
            adv_loss=g_losses["G_mse_fake_loss"].detach(),
            feat_match_loss=g_losses["G_feat_match_loss"].detach(),
        )

    def on_stage_end(self, stage: sb.Stage, stage_loss: float, epoch: int | None = None) -> None:
        """After training: next learning rate for both optimizers, checkpoint; log every stage."""
        stats = {"loss": stage_loss, **self.tracked_means(), **self.quality_stats(stage)}
        if stage == sb.Stage.TRAIN:
            self.train_stats = stats
            _, lr = self.hparams.scheduler(epoch)
            for optimizer in self.optimizers_dict.values():
                update_learning_rate(optimizer, lr)
            self.stats_meta = {"epoch": epoch, "steps": self.optimizer_step, "lr": lr}
            # On every process: SpeechBrain synchronises them and writes on the main one only
            self.checkpointer.save_and_keep_only(
                meta={"loss": stage_loss, "epoch": epoch},
                max_keys=["epoch"],
                num_to_keep=self.hparams.keep_checkpoints,
            )
            if epoch % self.hparams.valid_freq != 0:
                self.hparams.train_logger.log_stats(stats_meta=self.stats_meta, train_stats=stats)
        elif stage == sb.Stage.VALID:
            self.hparams.train_logger.log_stats(
                stats_meta=self.stats_meta, train_stats=self.train_stats, valid_stats=stats
            )
            self.log_progress()
        else:
            self.hparams.train_logger.log_stats(
                stats_meta={"Epoch loaded": self.hparams.epoch_counter.current}, test_stats=stats
            )
