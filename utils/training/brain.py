"""The parts of a ``sb.Brain`` every training stage shares: frozen-encoder features, validation frequency,
resynthesized-audio dumps, audio-quality metrics, running means of extra statistics and the optional
average of the trained weights (``ema_decay``, utils/training/ema.py)."""

import contextlib
import logging
from collections import defaultdict
from pathlib import Path
from typing import ClassVar, NamedTuple

import speechbrain as sb
import torch
import torchaudio
from speechbrain.utils.distributed import if_main_process
from torch.nn.utils.spectral_norm import SpectralNorm

from focalcodec.audio import absolute_lengths, as_written, fit_length, write_wav
from utils.evaluation import ModelScores, write_outputs
from utils.metrics import QualityMetrics
from utils.training.data import TrainItems
from utils.training.ema import WeightAverage, ema_name
from utils.training.resume import ResumePoint, ResumingLoader
from utils.training.shards import ShardLoader, ShardStream
from utils.training.train_logger import plot_training_curves

__all__ = ["CodecBrain", "Features", "compile_module"]

logger = logging.getLogger(__name__)


class Features(NamedTuple):
    """Frozen-encoder features of a batch, with the waveform they come from (see ``CodecBrain.features``)."""

    feats: torch.Tensor  # (B, T, D) features
    lens: torch.Tensor  # (B,) relative lengths of the features (uncached: those of the waveform)
    sig: torch.Tensor | None  # (B, N) waveform (None: a cached batch without audio)
    crop_lens: torch.Tensor  # (B,) relative lengths for utils.training.crop.random_feature_crop


def _spectral_normalised(module: torch.nn.Module) -> bool:
    """Whether ``module`` itself carries ``torch.nn.utils.spectral_norm`` (a forward pre-hook)."""
    return any(isinstance(hook, SpectralNorm) for hook in module._forward_pre_hooks.values())


def compile_module(module: torch.nn.Module, options: dict) -> torch.nn.Module:
    """``torch.compile(module, **options)``, except that spectral-normalised layers stay eager: the largest
    submodules without one are compiled in place (``nn.Module.compile``: same state-dict keys).

    Why: spectral norm updates its power-iteration vector in place at every training forward; the HiFi-GAN
    discriminator runs twice (real, then generated audio) before its backward, and inductor (torch 2.13)
    saves that vector without eager's protective copy, so the backward fails ("modified by an inplace
    operation"). SpeechBrain's multi-scale discriminator normalises its first scale this way.
    """
    if not any(_spectral_normalised(sub) for sub in module.modules()):
        return torch.compile(module, **options)
    for child in module.children():
        if _spectral_normalised(child):
            continue
        containers = (torch.nn.ModuleList, torch.nn.ModuleDict)  # never called: their members are
        if isinstance(child, containers) or any(_spectral_normalised(sub) for sub in child.modules()):
            compile_module(child, options)  # in place, below the spectral-normalised layers
        else:
            child.compile(**options)
    return module


@sb.utils.checkpoints.register_checkpoint_hooks  # so that the checkpointer calls this class's _recover
class CodecBrain(sb.Brain):
    """Base class of every training stage's Brain (``utils/training/stages/``).

    Expects in ``hparams``: ``encoder`` (frozen WavLM, weights already loaded), ``augment``,
    ``augmentation``, ``valid_freq``, ``save_audios``, ``num_saved_audios``, ``sample_rate``,
    ``output_folder``, ``epoch_counter`` and, for the audio-quality metrics, ``compute_metrics``,
    ``valid_metrics_every``, ``quality_metrics`` (a factory) and ``metrics_file``. Frozen modules are
    listed in ``frozen_modules``: they are moved to the device with the Brain but are neither trained
    nor checkpointed (``None`` if absent). Subclasses name their ``stage`` and ``trained_parts``, which the
    run folder records.
    """

    stage: str
    """The stage's name in its run folder (utils/runs/folder.py)."""
    trained_parts: ClassVar[dict[str, str]]
    """Codec part -> YAML key of the module trained for it (also its checkpoint file name)."""
    frozen_modules: tuple[str, ...] = ("encoder",)
    train_items: ClassVar[TrainItems] = TrainItems()
    """What the stage's training items hold (utils/training/data.py); the default: whole utterances, audio."""

    def __init__(self, *args, **kwargs) -> None:
        """SpeechBrain's, with the checkpointed :class:`~utils.training.resume.ResumePoint` (random
        generators, running means, train-log length: ``resume_point.ckpt``, absent from older checkpoints)."""
        super().__init__(*args, **kwargs)
        self.resume_point = ResumePoint(self)
        if self.checkpointer is not None:
            self.checkpointer.add_recoverable("resume_point", self.resume_point, optional_load=True)
        self.averages: dict[str, WeightAverage] = {}  # YAML key -> its EMA (with ema_decay)
        self.raw_stats: dict[str, float] = {}  # validation figures of the trained weights (ema_log_raw)

    def on_fit_start(self) -> None:
        """Move the frozen modules along, then the usual start (DDP wrap, optimizers, resume: exactly where
        the last intact checkpoint was, see utils/training/resume.py), with the weight averages (resumed, or
        started at the weights the run starts from). Without a checkpoint training starts afresh, and so does
        its train log."""
        self._frozen_to_device()
        self._add_weight_averages()
        self.resume_point.armed = True
        try:
            super().on_fit_start()
        finally:
            self.resume_point.armed = False
        self._start_weight_averages()
        if self.checkpointer is not None and not self.checkpointer.list_checkpoints() and if_main_process():
            self.resume_point.cut_train_log(0)

    def make_dataloader(self, dataset, stage: sb.Stage, ckpt_prefix: str | None = "dataloader-", **kwargs):
        """SpeechBrain's loader, or for a training set of shards (``train_shards``) a
        :class:`~utils.training.shards.ShardLoader`, which SpeechBrain then tells each epoch (as its own
        samplers) and checkpoints inside an epoch. The training one restores a pending intra-epoch resume
        point when it starts iterating (:class:`~utils.training.resume.ResumingLoader`)."""
        if isinstance(dataset, ShardStream):
            loader = ShardLoader(dataset, **kwargs)
            if self.checkpointer is not None and ckpt_prefix is not None:
                self.checkpointer.add_recoverable(ckpt_prefix + stage.name, loader)
            self.train_sampler = loader  # _fit_train calls its set_epoch
        else:
            loader = super().make_dataloader(dataset, stage, ckpt_prefix, **kwargs)
        return ResumingLoader(loader, self.resume_point) if stage == sb.Stage.TRAIN else loader

    def _add_weight_averages(self) -> None:
        """With ``ema_decay``: an average of each trained module, checkpointed (``ema_<key>``; optional to
        load, so that a run can turn it on when resumed). Flags them as not loaded, before a recovery."""
        decay = getattr(self.hparams, "ema_decay", None)
        if decay is not None and not self.averages:
            for key in self.trained_parts.values():
                self.averages[key] = WeightAverage(getattr(self.hparams, key), decay)
                if self.checkpointer is not None:
                    self.checkpointer.add_recoverable(ema_name(key), self.averages[key], optional_load=True)
        for average in self.averages.values():
            average.loaded = False

    def _start_weight_averages(self) -> None:
        """After a recovery: an average the checkpoint did not hold starts at the current weights."""
        for average in self.averages.values():
            if not average.loaded:
                average.average.n_averaged.zero_()
                average.update()

    def on_fit_batch_end(self, batch, outputs, loss, should_step: bool) -> None:
        """After an optimizer step, average the new weights in (with ``ema_decay``)."""
        if should_step:
            self.update_weight_averages()

    def update_weight_averages(self) -> None:
        for average in self.averages.values():
            average.update()

    def averaged_weights(self, enable: bool = True) -> contextlib.AbstractContextManager:
        """A block in which the trained modules hold their averaged weights (with ``ema_decay``)."""
        stack = contextlib.ExitStack()
        for average in self.averages.values() if enable else ():
            stack.enter_context(average.swapped_in())
        return stack

    def _compile(self) -> None:
        """With ``compile``: ``torch.compile`` every trained module (or ``compile_module_keys``) with the
        ``compile_backend`` (default inductor). A module that dynamo cannot compile falls back to eager
        execution with a warning instead of stopping the run (``suppress_errors``). Spectral-normalised
        layers stay eager (see :func:`compile_module`)."""
        if not self.compile:
            return super()._compile()  # e.g. --jit
        import torch._dynamo

        torch._dynamo.config.suppress_errors = True
        backend = getattr(self.hparams, "compile_backend", "inductor")
        options = {"backend": backend, "dynamic": self.compile_using_dynamic_shape_tracing}
        options.update({"mode": self.compile_mode} if backend == "inductor" else {})
        for name in self.compile_module_keys or list(self.modules):
            try:
                self.modules[name] = compile_module(self.modules[name], options).to(self.device)
            except Exception as error:  # an unsupported backend or platform: keep the eager module
                logger.warning(f"Cannot compile {name} ({type(error).__name__}: {error}); running it eagerly")
        return None

    @sb.utils.checkpoints.mark_as_loader
    def _recover(self, path, end_of_epoch: bool) -> None:
        """SpeechBrain's, except that an end-of-epoch checkpoint restores no position inside an epoch.

        SpeechBrain counts the batches of the running stage in ``step`` and averages the stage's loss over
        it; it resets both after each training epoch, but the decoder stage checkpoints before that reset in
        an epoch without validation, so loading its checkpoint (the test stage's best one, or a resume)
        restored the last epoch's step count, and the next stage's average divided by too many batches (its
        logged test loss was sum / (steps + batches)). An intra-epoch checkpoint still restores both, to
        resume mid-epoch."""
        super()._recover(path, end_of_epoch)
        if end_of_epoch:
            self.step = 0
            self.avg_train_loss = 0.0

    def on_evaluate_start(self, max_key: str | None = None, min_key: str | None = None) -> None:
        """Move the frozen modules along, then load the best checkpoint (and its weight averages)."""
        self._frozen_to_device()
        self._add_weight_averages()
        super().on_evaluate_start(max_key=max_key, min_key=min_key)
        self._start_weight_averages()

    def _frozen_to_device(self) -> None:
        for name in self.frozen_modules:
            module = getattr(self.hparams, name)
            if module is not None:  # e.g. no decoder to listen through
                module.to(self.device).eval()

    @property
    def frozen_features(self) -> torch.nn.Module:
        """The frozen module whose output the stage reads (and the feature cache stores): ``frozen_features``
        of the YAML when it has one (e.g. a teacher's layer outputs, utils/training/distillation.py), else
        ``encoder``. Called as ``module(sig, length=lens)[0]``."""
        return getattr(self.hparams, "frozen_features", None) or self.hparams.encoder

    @torch.no_grad()
    def extract_feats(self, sig: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        """Frozen features of a padded batch: (B, N) -> (B, T, D). A waveform at another rate than the
        encoder's (the 24 kHz targets of a WaveNeXt decoder stage) is resampled for it first."""
        module = self.frozen_features
        if self.hparams.sample_rate != module.sample_rate:
            sig = torchaudio.functional.resample(sig, self.hparams.sample_rate, module.sample_rate)
        return module(sig, length=lens)[0]

    @torch.no_grad()
    def synthesize(self, feats: torch.Tensor, num_samples: int) -> torch.Tensor:
        """(B, T, D) features -> (B, num_samples) audio at ``sample_rate`` through the frozen ``decoder``,
        resampled from the decoder's own rate when it differs (a WaveNeXt with hop 480 on 50 Hz frames
        speaks at 24 kHz), then fitted to ``num_samples``."""
        encoder, decoder = self.hparams.encoder, self.hparams.decoder
        audio = decoder(feats.float())[0]
        rate = encoder.sample_rate * decoder.upsample_factor // encoder.downsample_factor
        if rate != self.hparams.sample_rate:
            audio = torchaudio.functional.resample(audio, rate, self.hparams.sample_rate)
        return fit_length(audio, num_samples)

    def features(self, batch, stage: sb.Stage) -> Features:
        """The batch's frozen-encoder features: read from the feature cache when the batch carries them
        (``feats``, see utils/feature_cache/), else computed from the (augmented) waveform."""
        if hasattr(batch, "feats"):
            feats, lens = batch.feats
            sig = batch.sig[0] if hasattr(batch, "sig") else None
            # ceil(T * lens) must give each item's exact frame count; T * (T_b / T) can round up past T_b
            frames = torch.round(lens * feats.shape[1])
            return Features(feats, lens, sig, (frames - 0.5) / feats.shape[1])
        sig, lens = self.maybe_augment(*batch.sig, stage)
        return Features(self.extract_feats(sig, lens), lens, sig, lens)

    def maybe_augment(
        self, sig: torch.Tensor, lens: torch.Tensor, stage: sb.Stage
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Waveform augmentation of training batches when ``augment`` is on."""
        if stage == sb.Stage.TRAIN and self.hparams.augment:
            sig, lens = self.hparams.augmentation(sig, lens)
        return sig, lens

    def _fit_valid(self, valid_set, epoch: int, enable: bool) -> None:
        """Validate only every ``valid_freq`` epochs; with ``ema_decay`` and ``ema_log_raw``, the trained
        weights too (their figures logged as ``raw_<name>``), before the averaged ones."""
        if epoch % self.hparams.valid_freq != 0:
            return
        self.raw_stats = {}
        if self.averages and getattr(self.hparams, "ema_log_raw", False) and valid_set is not None:
            self.raw_stats = self._raw_validation(valid_set, epoch)
        super()._fit_valid(valid_set, epoch, enable)

    @torch.no_grad()
    def _raw_validation(self, valid_set, epoch: int) -> dict[str, float]:
        """The validation figures of the trained (not averaged) weights, as ``raw_<name>``: a pass that
        scores no audio quality, writes no audio and leaves the scheduler and the checkpoints alone."""
        self.on_stage_start(sb.Stage.VALID, epoch)
        for average in self.averages.values():
            average.swap_out()
        self.quality = None
        self.saved_audios = getattr(self.hparams, "num_saved_audios", 0)
        self.modules.eval()
        loss = 0.0
        for batch in valid_set:
            self.step += 1
            loss = self.update_average(self.evaluate_batch(batch, stage=sb.Stage.VALID), loss)
        self.step = 0
        stats = {"loss": loss, **self.tracked_means(), **self.evaluation_stats(sb.Stage.VALID)}
        return {f"raw_{name}": value for name, value in stats.items()}

    def evaluation_stats(self, stage: sb.Stage) -> dict[str, float]:
        """Figures a validation or test stage logs besides the loss and the tracked means (none here)."""
        return {}

    def on_stage_end(self, stage: sb.Stage, stage_loss: float, epoch: int | None = None) -> None:
        """Log; after validation anneal the learning rate (NewBob on the validation loss) and checkpoint
        (the best by loss kept). Every stage but the decoder's, whose scheduler steps per epoch."""
        self.swap_out_averages()
        stats = {"loss": stage_loss, **self.tracked_means()}
        if stage == sb.Stage.TRAIN:
            self.train_stats = stats
            if epoch % self.hparams.valid_freq != 0:
                self.hparams.train_logger.log_stats(
                    stats_meta={"epoch": epoch, "steps": self.optimizer_step}, train_stats=stats
                )
            return
        stats.update(self.evaluation_stats(stage))
        if stage == sb.Stage.VALID:
            stats.update(self.raw_stats)
            _, lr = self.hparams.scheduler(stage_loss)
            sb.nnet.schedulers.update_learning_rate(self.optimizer, lr)
            self.hparams.train_logger.log_stats(
                stats_meta={"epoch": epoch, "steps": self.optimizer_step, "lr": lr},
                train_stats=self.train_stats,
                valid_stats=stats,
            )
            # On every process: SpeechBrain synchronises them and writes on the main one only
            self.checkpointer.save_and_keep_only(
                meta={"loss": stage_loss}, min_keys=["loss"], num_to_keep=self.hparams.keep_checkpoints
            )
        else:
            self.hparams.train_logger.log_stats(
                stats_meta={"Epoch loaded": self.hparams.epoch_counter.current}, test_stats=stats
            )

    def on_stage_start(self, stage: sb.Stage, epoch: int | None = None) -> None:
        """Reset the per-stage audio counter, running statistics and quality metrics; a validation or test
        stage counts its batches from zero, whatever checkpoint was loaded before it (see _recover)."""
        if stage != sb.Stage.TRAIN:
            self.step = 0
        elif getattr(self.hparams, "item_seeds", None) is not None:
            self.hparams.item_seeds.epoch = epoch  # the crops of this epoch (utils/training/data.py)
        self.saved_audios = 0
        self.saved_files: dict[str, dict[str, Path]] = {}  # id -> signal name -> WAV (the report's audio)
        self.sb_stage = stage  # SpeechBrain's TRAIN/VALID/TEST (``stage`` is the run-folder stage's name)
        self._sums: dict[str, float] = defaultdict(float)
        self._counts: dict[str, int] = defaultdict(int)
        self._clipped: dict[str, int] = defaultdict(int)
        self.quality = self._quality_metrics(stage, epoch)
        if stage != sb.Stage.TRAIN:  # valid and test hold the averaged weights (until on_stage_end)
            for average in self.averages.values():
                average.swap_in()

    def swap_out_averages(self) -> None:
        """The trained modules hold their own weights again (first thing of ``on_stage_end``)."""
        for average in self.averages.values():
            average.swap_out()

    def _quality_metrics(self, stage: sb.Stage, epoch: int | None) -> QualityMetrics | None:
        """The audio-quality metrics when this stage computes them (always at test with
        ``compute_metrics``, at validation every ``valid_metrics_every`` epochs). Built once: the
        models load at the first scored batch and are reused by later stages."""
        every = getattr(self.hparams, "valid_metrics_every", 0)  # stages without audio have neither key
        wanted = (stage == sb.Stage.TEST and getattr(self.hparams, "compute_metrics", False)) or (
            stage == sb.Stage.VALID and every > 0 and epoch is not None and epoch % every == 0
        )
        if not wanted:
            return None
        if getattr(self, "_quality", None) is None:
            self._quality = self.hparams.quality_metrics()
        self._quality.clear()
        return self._quality

    def score_and_save(self, ids: list[str], lens: torch.Tensor, **signals: torch.Tensor) -> None:
        """A valid/test batch's audio: each (B, N) signal at ``sample_rate`` (``ref``, and ``hyp`` and the
        like where the stage resynthesizes) as its WAV file holds it (clipped to [-1, 1], 16-bit:
        :func:`focalcodec.audio.as_written`), scored (``hyp`` against ``ref``, when this stage computes
        metrics) and written (:meth:`save_audios`). What is heard and what is measured are the same samples;
        the clipped samples are counted, and reported at the end of the stage. Scoring leaves torch's random
        generators as they were (its models load at the first scored batch, which a resumed run meets at
        another point)."""
        lengths = torch.tensor(absolute_lengths(lens, len(ids), next(iter(signals.values())).shape[-1]))
        written = {}
        for name, sig in signals.items():
            valid = torch.arange(sig.shape[-1]) < lengths[:, None]  # the padding is never written
            written[name], clipped = as_written(sig.float().cpu() * valid)
            self._clipped[name] += clipped
        if "hyp" in written and self.quality is not None:
            cuda = [torch.device(self.device).index or 0] if self.device_type == "cuda" else []
            with torch.random.fork_rng(devices=cuda):  # metric models load on first use
                self.quality.append(ids, written["hyp"], written["ref"], lens)
        self.save_audios(ids, lens, **written)

    def quality_stats(self, stage: sb.Stage) -> dict[str, float]:
        """This stage's quality figures (labelled by the model that made them); at test also written with
        the per-utterance details (transcripts, scores) to ``metrics_file``, and beside it the table with
        intervals, ``scores.csv`` and ``report.html`` (:meth:`write_test_report`; without metrics, the
        report of the saved audio alone). Warns when audio was clipped."""
        clipped = {name: count for name, count in self._clipped.items() if count}
        if clipped:
            counts = ", ".join(f"{count} of {name}" for name, count in clipped.items())
            logger.warning(
                f"{stage.name.lower()}: audio samples outside [-1, 1] were clipped ({counts}); the written "
                "files and the scores hold the same clipped samples"
            )
        if stage == sb.Stage.TEST and if_main_process():
            if self.quality is not None:
                self.quality.write_stats(self.hparams.metrics_file)
            if self.quality is not None or self.saved_files:
                self.write_test_report()
        return {} if self.quality is None else self.quality.summarize()

    def write_test_report(self) -> Path:
        """Beside ``metrics_file``: the test figures with their intervals (``results.md``/``.csv``), every
        utterance's scores (``scores.csv``) and ``report.html`` with the saved test audio (ref first) and
        the training curves so far (utils/evaluation/); returns the report's path."""
        folder = Path(self.hparams.metrics_file).parent
        name = type(self).stage
        audios = {
            utt: dict(sorted(files.items(), key=lambda f: f[0] != "ref"))
            for utt, files in self.saved_files.items()
        }
        train_log = Path(getattr(self.hparams, "train_log", folder / "train_log.txt"))
        curves = folder / "report_files" / "training_curves.png"
        curves.parent.mkdir(parents=True, exist_ok=True)
        curves = plot_training_curves(train_log, curves) if train_log.is_file() else None
        title = f"{name} stage, test set: {folder}"
        row = ModelScores(name) if self.quality is None else ModelScores.from_metrics(name, self.quality)
        return write_outputs([row], folder, audios, title, images={"Training curves": curves}).report

    def track(self, **values: torch.Tensor | float) -> None:
        """Add one value per name to this stage's running means (e.g. loss terms)."""
        for name, value in values.items():
            self._sums[name] += float(value)
            self._counts[name] += 1

    def tracked_means(self) -> dict[str, float]:
        """Means of everything passed to :meth:`track` in this stage."""
        return {name: self._sums[name] / self._counts[name] for name in self._sums}

    def save_audios(self, ids: list[str], lens: torch.Tensor, **signals: torch.Tensor) -> None:
        """Write ``{id}_{name}.wav`` (16-bit PCM) for the first ``num_saved_audios`` items of a valid/test
        stage (and send ``ref``/``hyp`` with their mel spectrograms to TensorBoard).

        Arguments
        ---------
        ids : utterance ids of the batch.
        lens : (B,) relative lengths; padding is not written.
        **signals : name -> (B, N) waveforms at ``sample_rate``, e.g. ``hyp=..., ref=...``.
        """
        remaining = self.hparams.num_saved_audios - self.saved_audios
        if not self.hparams.save_audios or remaining <= 0 or not if_main_process():
            return
        epoch = self.hparams.epoch_counter.current
        folder = Path(self.hparams.output_folder) / "audios" / f"epoch{epoch:04d}"
        for index, utt_id in enumerate(ids[:remaining]):
            audios = {}
            for name, sig in signals.items():
                length = absolute_lengths(lens[index : index + 1], 1, sig.shape[-1])[0]
                audios[name] = sig[index, :length].detach().float().cpu()
                path = folder / f"{utt_id}_{name}.wav"  # ids of folder corpora hold "/": subfolders
                write_wav(path, audios[name], self.hparams.sample_rate)
                self.saved_files.setdefault(utt_id, {})[name] = path
            if "hyp" in audios:
                tag = f"{self.sb_stage.name.lower()}/{utt_id}"
                self.hparams.train_logger.log_audio_pair(tag, audios["ref"], audios["hyp"], epoch)
        self.saved_audios += min(len(ids), remaining)
