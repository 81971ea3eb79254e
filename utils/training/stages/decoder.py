"""The decoder stage's Brain (``train_decoder.py``; FocalCodec-Stream stage 1 too): a Vocos (or WaveNeXt)
generator trained adversarially on frozen encoder features, with HiFi-GAN discriminators.

Each step crops ``segment_size_feats`` feature frames per utterance, updates the discriminators (hinge
loss), then the generator (hinge adversarial + 54 x feature matching + 45 x mel L1) through the updated
discriminators. Valid and test resynthesize whole utterances.

Besides (off by default, docs/deviations.md #32, #33): a mel-only warm-up of the generator
(``pretrain_mel_steps``, Vocos's) and a discriminator learning-rate multiplier; always: GAN diagnostics
every ``gan_log_every_steps`` steps (utils/training/gan_monitor.py), which change no number.
"""

import logging
from typing import ClassVar, NamedTuple

import speechbrain as sb
import torch
from speechbrain.nnet.schedulers import update_learning_rate
from speechbrain.utils.distributed import if_main_process

from focalcodec.audio import fit_length
from utils.training.brain import CodecBrain
from utils.training.crop import cached_crop, crop_seconds, random_feature_crop
from utils.training.data import TrainItems
from utils.training.gan_monitor import GanStep

logger = logging.getLogger(__name__)


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
        """One AdamW per network, both checkpointed; the discriminator's learning rate is ``lr`` times
        ``discriminator_lr_multiplier``."""
        if self.grad_accumulation_factor != 1:
            raise ValueError("the decoder stage does not support grad_accumulation_factor != 1")
        self._log_deviations()
        self.optimizer_generator = self.opt_class(self.modules.generator.parameters())
        self.optimizer_discriminator = self.opt_class(self.modules.discriminator.parameters())
        for group in self.optimizer_discriminator.param_groups:
            group["lr"] *= self.lr_multiplier
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

    @property
    def lr_multiplier(self) -> float:
        return float(getattr(self.hparams, "discriminator_lr_multiplier", 1.0))

    @property
    def gan_monitor(self):
        """The GAN diagnostics (``gan_monitor`` of the YAML), or ``None``."""
        monitor = getattr(self.hparams, "gan_monitor", None)
        return monitor if monitor is not None and monitor.enabled else None

    def warming_up(self) -> bool:
        """Whether this step is one of the first ``pretrain_mel_steps`` (mel loss only, no discriminator)."""
        return self.optimizer_step < getattr(self.hparams, "pretrain_mel_steps", 0)

    def _log_deviations(self) -> None:
        if getattr(self.hparams, "pretrain_mel_steps", 0) > 0:
            logger.warning(
                f"pretrain_mel_steps: {self.hparams.pretrain_mel_steps}: the generator first trains on the "
                "mel loss alone, without discriminator (a deviation from the original: "
                "docs/deviations.md #32)"
            )
        if self.lr_multiplier != 1.0:
            logger.warning(
                f"discriminator_lr_multiplier: {self.lr_multiplier}: the discriminator learns at another "
                "rate than the generator (a deviation from the original: docs/deviations.md #33)"
            )

    def discriminator_loss(self, out: GeneratorOutput) -> torch.Tensor:
        """Hinge loss of the discriminators on real audio and on (detached) generated audio; in training, the
        scores go to the GAN diagnostics."""
        scores_fake = self.modules.discriminator(out.hyp.detach())[0]
        scores_real = self.modules.discriminator(out.ref)[0]
        if self.sb_stage == sb.Stage.TRAIN and self.gan_monitor is not None:
            self.gan_monitor.record_scores(scores_real, scores_fake)
        return self.hparams.discriminator_loss(scores_fake, scores_real)["D_loss"]

    def generator_loss(
        self, out: GeneratorOutput, stage: sb.Stage, adversarial: bool = True
    ) -> dict[str, torch.Tensor]:
        """Adversarial, feature-matching and mel-L1 terms through frozen discriminators (the mel term alone,
        without running them, when not ``adversarial``: the warm-up)."""
        if not adversarial:
            return self.hparams.generator_loss(stage, out.hyp, out.ref)
        discriminator = self.modules.discriminator
        discriminator.requires_grad_(False)
        scores_fake, feats_fake = discriminator(out.hyp)
        _, feats_real = discriminator(out.ref)
        discriminator.requires_grad_(True)
        return self.hparams.generator_loss(stage, out.hyp, out.ref, scores_fake, feats_fake, feats_real)

    def _optimizer_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> torch.Tensor:
        """Backward, unscale, clip at ``max_grad_norm`` (``None``: never, the original mode), step; a
        non-finite loss skips the update (and counts against ``nonfinite_patience``). Returns the gradient
        norm before clipping (NaN for a skipped update; computed without clipping for the diagnostics)."""
        if not torch.isfinite(loss):
            self.check_loss_isfinite(loss)
            optimizer.zero_grad(set_to_none=True)
            return torch.tensor(float("nan"))
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(optimizer)
        params = optimizer.param_groups[0]["params"]
        if self.max_grad_norm is not None:
            norm = torch.nn.utils.clip_grad_norm_(params, self.max_grad_norm)
        elif self.gan_monitor is not None:  # read only
            norm = torch.nn.utils.get_total_norm([param.grad for param in params if param.grad is not None])
        else:
            norm = torch.tensor(float("nan"))
        self.scaler.step(optimizer)
        optimizer.zero_grad(set_to_none=True)
        return norm

    def fit_batch(self, batch) -> torch.Tensor:
        """Discriminator step, then generator step through the updated discriminator (the generator alone,
        on the mel loss, during the warm-up)."""
        adversarial = not self.warming_up()
        with self.training_ctx:
            out = self.compute_forward(batch, sb.Stage.TRAIN)
            d_loss = self.discriminator_loss(out) if adversarial else None
        if d_loss is not None:
            d_norm = self._optimizer_step(d_loss, self.optimizer_discriminator)

        with self.training_ctx:
            g_losses = self.generator_loss(out, sb.Stage.TRAIN, adversarial)
        g_norm = self._optimizer_step(g_losses["G_loss"], self.optimizer_generator)

        self.scaler.update()
        self.optimizer_step += 1
        self._track_losses(d_loss, g_losses)
        if d_loss is not None and self.gan_monitor is not None:
            terms = (g_losses["G_mse_fake_loss"], g_losses["G_feat_match_loss"])
            self.gan_monitor.record_step(GanStep(d_loss, *terms, d_norm, g_norm))
        self.update_weight_averages()
        self._log_gan()
        if self.hparams.progress.due(self.optimizer_step):
            self.log_progress()
        return g_losses["G_loss"].detach().cpu()

    def _log_gan(self) -> None:
        """At the end of a diagnostics interval: its figures to the log and TensorBoard (``gan/*``), and the
        warning when the discriminator wins."""
        monitor = self.gan_monitor
        if monitor is None or not monitor.due(self.optimizer_step):
            return
        figures = monitor.flush()
        self.hparams.train_logger.log_progress(self.optimizer_step, figures, dataset="gan")
        warning = monitor.check()
        if warning is not None and if_main_process():
            logger.warning(warning)

    @torch.no_grad()
    def resynthesize(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, N) resynthesis and input of a batch, through the generator itself (not its DDP wrapper: the
        main process alone runs this, between training steps)."""
        batch = batch.to(self.device)
        inputs = self.features(batch, sb.Stage.VALID)
        return fit_length(self.hparams.generator(inputs.feats)[0], inputs.sig.shape[-1]), inputs.sig

    def log_progress(self) -> None:
        """Progress figures of the fixed validation utterances (utils/training/progress.py), main process
        only: of the averaged weights with ``ema_decay`` (and of the trained ones, ``raw_<name>``, with
        ``ema_log_raw``)."""
        if not if_main_process():
            return
        generator = self.hparams.generator
        training = generator.training
        generator.eval()
        figures = {}
        if self.averages and getattr(self.hparams, "ema_log_raw", False):
            raw = self.hparams.progress.measure(self.resynthesize)
            figures.update({f"raw_{name}": value for name, value in raw.items()})
        with self.averaged_weights():
            figures = {**self.hparams.progress.measure(self.resynthesize), **figures}
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

    def _track_losses(self, d_loss: torch.Tensor | None, g_losses: dict[str, torch.Tensor]) -> None:
        """The loss terms' running means (the mel loss alone during the warm-up)."""
        if d_loss is None:
            self.track(mel_loss=g_losses["G_l1_spec_loss"].detach())
            return
        self.track(
            D_loss=d_loss.detach(),
            mel_loss=g_losses["G_l1_spec_loss"].detach(),
            adv_loss=g_losses["G_mse_fake_loss"].detach(),
            feat_match_loss=g_losses["G_feat_match_loss"].detach(),
        )

    def on_stage_end(self, stage: sb.Stage, stage_loss: float, epoch: int | None = None) -> None:
        """After training: next learning rate for both optimizers; log every stage; checkpoint at the end of
        the epoch's last stage (validation when there is one), so that a resumed run never skips a
        validation (nor its log line)."""
        self.swap_out_averages()
        stats = {"loss": stage_loss, **self.tracked_means(), **self.quality_stats(stage)}
        if stage == sb.Stage.TRAIN:
            self.train_stats = stats
            _, lr = self.hparams.scheduler(epoch)
            update_learning_rate(self.optimizer_generator, lr)
            update_learning_rate(self.optimizer_discriminator, lr * self.lr_multiplier)
            self.stats_meta = {"epoch": epoch, "steps": self.optimizer_step, "lr": lr}
            if epoch % self.hparams.valid_freq != 0:
                self.hparams.train_logger.log_stats(stats_meta=self.stats_meta, train_stats=stats)
                self._save_epoch(epoch)
        elif stage == sb.Stage.VALID:
            self.hparams.train_logger.log_stats(
                stats_meta=self.stats_meta,
                train_stats=self.train_stats,
                valid_stats={**stats, **self.raw_stats},
            )
            self.log_progress()
            self._save_epoch(epoch)
        else:
            self.hparams.train_logger.log_stats(
                stats_meta={"Epoch loaded": self.hparams.epoch_counter.current}, test_stats=stats
            )

    def _save_epoch(self, epoch: int) -> None:
        """The end-of-epoch checkpoint (meta: the training loss and the epoch; the latest ones kept). On
        every process: SpeechBrain synchronises them and writes on the main one only."""
        self.checkpointer.save_and_keep_only(
            meta={"loss": self.train_stats["loss"], "epoch": epoch},
            max_keys=["epoch"],
            num_to_keep=self.hparams.keep_checkpoints,
        )
