"""Training logs: SpeechBrain's text log, TensorBoard (scalars, audio, mel-spectrogram images) and a PNG
of the training curves."""

import logging
import re
from pathlib import Path

import torch
import torchaudio
from speechbrain.utils.distributed import if_main_process
from speechbrain.utils.train_logger import FileTrainLogger

__all__ = ["RecipeLogger", "curve_panels", "parse_train_log", "plot_training_curves"]

logger = logging.getLogger(__name__)


class RecipeLogger(FileTrainLogger):
    """``FileTrainLogger`` that also writes TensorBoard events (main process only).

    Scalars are logged per epoch as ``<stage>/<name>`` (e.g. ``train/loss``, ``valid/code_usage``) plus
    ``lr``; :meth:`log_audio_pair` adds the reference and resynthesized audio and an image of their mel
    spectrograms.

    Arguments
    ---------
    save_file : the text log (``train_log.txt``).
    tensorboard_dir : TensorBoard event folder.
    use_tensorboard : write TensorBoard events at all.
    sample_rate : audio sample rate (for the mel images).
    precision : digits of the text log.
    """

    def __init__(
        self,
        save_file: str,
        tensorboard_dir: str,
        use_tensorboard: bool = True,
        sample_rate: int = 16000,
        precision: int = 5,
    ) -> None:
        super().__init__(save_file, precision=precision)
        self.sample_rate = sample_rate
        self.writer = None
        if use_tensorboard and if_main_process():
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(tensorboard_dir)
        self._mel = torchaudio.transforms.MelSpectrogram(
            sample_rate, n_fft=1024, hop_length=256, n_mels=80, power=1.0
        )

    def log_stats(
        self, stats_meta, train_stats=None, valid_stats=None, test_stats=None, verbose=True
    ) -> None:
        """Text line as SpeechBrain writes it, and one TensorBoard scalar per figure (step = epoch)."""
        super().log_stats(stats_meta, train_stats, valid_stats, test_stats, verbose)
        if self.writer is None:
            return
        step = int(stats_meta.get("epoch", stats_meta.get("Epoch loaded", 0)))
        for key in ("lr", "steps"):
            if key in stats_meta:
                self.writer.add_scalar(key, stats_meta[key], step)
        for stage, stats in (("train", train_stats), ("valid", valid_stats), ("test", test_stats)):
            for name, value in (stats or {}).items():
                self.writer.add_scalar(f"{stage}/{name}", float(value), step)
        self.writer.flush()

    def log_progress(self, step: int, figures: dict[str, float]) -> None:
        """A line ``steps: N - progress <name>: value, ...`` and TensorBoard scalars ``progress/<name>`` at
        training step ``step`` (see utils/training/progress.py)."""
        if not figures or not if_main_process():
            return
        with open(self.save_file, "a") as stream:
            print(f"steps: {step} - {self._stats_to_string(figures, dataset='progress')}", file=stream)
        if self.writer is not None:
            for name, value in figures.items():
                self.writer.add_scalar(f"progress/{name}", float(value), step)
            self.writer.flush()

    def log_audio_pair(self, tag: str, ref: torch.Tensor, hyp: torch.Tensor, step: int) -> None:
        """Reference and resynthesized (N,) waveforms as TensorBoard audio, and their mel spectrograms
        side by side as an image."""
        if self.writer is None:
            return
        ref, hyp = ref.detach().float().cpu(), hyp.detach().float().cpu()
        self.writer.add_audio(f"{tag}/ref", ref[None], step, sample_rate=self.sample_rate)
        self.writer.add_audio(f"{tag}/hyp", hyp[None], step, sample_rate=self.sample_rate)
        self.writer.add_figure(f"{tag}/mel", self._mel_figure(ref, hyp), step)
        self.writer.flush()

    def _mel_figure(self, ref: torch.Tensor, hyp: torch.Tensor):
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot as plt

        figure, axes = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
        for axis, (name, sig) in zip(axes, (("reference", ref), ("resynthesis", hyp)), strict=True):
            mel = self._mel(sig).clamp(min=1e-5).log()
            axis.imshow(mel.numpy(), origin="lower", aspect="auto", interpolation="none")
            axis.set_title(name)
            axis.set_ylabel("mel bin")
        axes[-1].set_xlabel("frame")
        figure.tight_layout()
        return figure


def parse_train_log(path: str | Path) -> list[dict[str, float]]:
    """Each line of a ``train_log.txt`` as ``{"epoch": 1.0, "train loss": ..., "valid loss": ...}``."""
    rows = []
    for line in Path(path).read_text().splitlines():
        pairs = re.findall(r"([A-Za-z][A-Za-z0-9_ -]*): ([-+0-9.e]+|nan|inf)", line)
        rows.append({key.strip(" -"): float(value) for key, value in pairs})
    return rows


def curve_panels(rows: list[dict[str, float]]) -> list[tuple[str, str, dict[str, list]]]:
    """Panels ``(title, x axis, {label: [(x, y), ...]})``: every train/valid figure against the epoch, and
    every progress figure against the training step."""
    epochs = [row for row in rows if "epoch" in row]
    names = sorted(
        {key.split(" ", 1)[1] for row in epochs for key in row if key.startswith(("train ", "valid "))}
    )
    panels = []
    for name in names:
        lines = {
            stage: [(row["epoch"], row[f"{stage} {name}"]) for row in epochs if f"{stage} {name}" in row]
            for stage in ("train", "valid")
        }
        panels.append((name, "epoch", {stage: points for stage, points in lines.items() if points}))
    progress = [row for row in rows if "steps" in row and "epoch" not in row]
    for name in sorted(
        {key.split(" ", 1)[1] for row in progress for key in row if key.startswith("progress ")}
    ):
        points = [(row["steps"], row[f"progress {name}"]) for row in progress if f"progress {name}" in row]
        panels.append((f"{name} (fixed validation set)", "step", {"progress": points}))
    return panels


def plot_training_curves(train_log: str | Path, png: str | Path) -> Path | None:
    """Plot every train/valid figure of ``train_log`` against the epoch, and every progress figure against
    the training step, into ``png`` (one panel each)."""
    panels = curve_panels(parse_train_log(train_log))
    if not panels:
        return None
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    columns = min(3, len(panels))
    lines = -(-len(panels) // columns)
    figure, axes = plt.subplots(lines, columns, figsize=(4.5 * columns, 3 * lines), squeeze=False)
    for axis, (title, x_label, curves) in zip(axes.flat, panels, strict=False):
        for label, points in curves.items():
            axis.plot(*zip(*points, strict=True), marker="o", label=label)
        axis.set_title(title)
        axis.set_xlabel(x_label)
        axis.legend()
    for axis in list(axes.flat)[len(panels) :]:
        axis.axis("off")
    figure.tight_layout()
    figure.savefig(png, dpi=100)
    plt.close(figure)
    logger.info(f"Training curves: {png}")
    return Path(png)
