"""The training log: parsing SpeechBrain's lines and the progress lines, and the curves PNG."""

from utils.training.train_logger import RecipeLogger, curve_panels, parse_train_log, plot_training_curves


def test_epoch_and_progress_lines_are_parsed_and_plotted(tmp_path):
    log = RecipeLogger(str(tmp_path / "train_log.txt"), str(tmp_path / "tb"), use_tensorboard=False)
    log.log_progress(100, {"mel_distance": 2.5, "DNSMOS-OVRL": 2.0})
    log.log_stats(
        {"epoch": 1, "lr": 2e-4}, train_stats={"loss": 3.0}, valid_stats={"loss": 2.75, "layer6_mse": 1e-3}
    )
    log.log_progress(200, {"mel_distance": 1.5, "DNSMOS-OVRL": 2.5})
    rows = parse_train_log(tmp_path / "train_log.txt")
    assert rows[0] == {"steps": 100, "progress mel_distance": 2.5, "progress DNSMOS-OVRL": 2.0}
    assert rows[1] == {
        "epoch": 1,
        "lr": 2e-4,
        "train loss": 3.0,
        "valid loss": 2.75,
        "valid layer6_mse": 1e-3,
    }
    assert rows[2]["steps"] == 200
    png = plot_training_curves(tmp_path / "train_log.txt", tmp_path / "curves.png")
    assert png is not None and png.stat().st_size > 1000
    panels = {title: (x_axis, curves) for title, x_axis, curves in curve_panels(rows)}
    assert panels["loss"] == ("epoch", {"train": [(1, 3.0)], "valid": [(1, 2.75)]})
    assert panels["layer6_mse"] == ("epoch", {"valid": [(1, 1e-3)]})  # names may hold digits
    assert panels["mel_distance (fixed validation set)"] == ("step", {"progress": [(100, 2.5), (200, 1.5)]})
    assert panels["DNSMOS-OVRL (fixed validation set)"][1]["progress"] == [(100, 2.0), (200, 2.5)]


def test_nothing_to_plot(tmp_path):
    (tmp_path / "train_log.txt").write_text("")
    assert plot_training_curves(tmp_path / "train_log.txt", tmp_path / "curves.png") is None
