"""The resume point (utils/training/resume.py) in pieces: every random generator saved and restored through a
checkpoint file, an intra-epoch state restored only after the resumed loader drew its seed, the train log
cut back to the checkpoint, and the crops of the data pipeline keyed by (seed, epoch, utterance)."""

import random
from collections import defaultdict
from types import SimpleNamespace

import numpy as np
import torch
from speechbrain.dataio.dataloader import SaveableDataLoader

from utils.training.data import ItemSeeds
from utils.training.resume import ResumePoint, ResumingLoader, make_deterministic, random_states


def draws() -> tuple:
    return random.random(), float(np.random.rand()), torch.rand(2).tolist()


def resume_point(tmp_path) -> ResumePoint:
    """A ResumePoint of a stand-in Brain (running means, non-finite count, a train log)."""
    logger = SimpleNamespace(save_file=str(tmp_path / "train_log.txt"))
    brain = SimpleNamespace(_sums=defaultdict(float), _counts=defaultdict(int), nonfinite_count=0)
    brain.hparams = SimpleNamespace(train_logger=logger)
    return ResumePoint(brain)


def test_every_generator_is_restored_from_the_file(tmp_path):
    point = resume_point(tmp_path)
    (tmp_path / "train_log.txt").write_text("epoch: 1\n")
    point.brain._sums["loss"], point.brain._counts["loss"] = 3.5, 2
    point.save(tmp_path / "resume_point.ckpt")
    expected = draws()
    draws()
    point.brain._sums.clear()
    point.armed = True
    point.load(tmp_path / "resume_point.ckpt", end_of_epoch=True)  # at once
    assert draws() == expected
    assert point.pending is None and point.brain._sums == {}  # an epoch's end: no running means


def test_an_intra_epoch_state_waits_for_the_loader_seed(tmp_path):
    """A DataLoader iterator draws a seed from torch's generator: the state is restored after it."""
    point = resume_point(tmp_path)
    point.brain._sums["loss"], point.brain._counts["loss"], point.brain.nonfinite_count = 3.5, 2, 1
    point.save(tmp_path / "resume_point.ckpt")
    expected = draws()
    point.brain._sums.clear()
    point.armed = True
    point.load(tmp_path / "resume_point.ckpt", end_of_epoch=False)
    assert point.pending is not None
    loader = ResumingLoader(SaveableDataLoader(list(range(4)), batch_size=2), point)
    state = torch.get_rng_state()
    iter(loader.loader)
    assert not torch.equal(state, torch.get_rng_state())  # the draw the restore must come after
    batches = iter(loader)
    assert draws() == expected and len(loader) == 2 and next(batches).tolist() == [0, 1]
    assert point.brain._sums == {"loss": 3.5} and point.brain._counts == {"loss": 2}
    assert point.brain.nonfinite_count == 1


def test_not_armed_loads_nothing_and_the_log_is_cut_back(tmp_path):
    point = resume_point(tmp_path)
    log = tmp_path / "train_log.txt"
    log.write_text("epoch: 1\n")
    point.save(tmp_path / "resume_point.ckpt")
    log.write_text("epoch: 1\nepoch: 2\nsteps: 6 - progress\n")  # written after the checkpoint
    state = random_states()
    point.load(tmp_path / "resume_point.ckpt", end_of_epoch=True)  # the test stage's best checkpoint
    assert log.read_text().count("\n") == 3 and torch.equal(state["torch"], torch.get_rng_state())
    point.armed = True
    point.load(tmp_path / "resume_point.ckpt", end_of_epoch=True)
    assert log.read_text() == "epoch: 1\n"


def test_crops_depend_on_seed_epoch_and_utterance_only():
    seeds = ItemSeeds(0)

    def draw(uttid: str) -> int:
        return int(torch.randint(1000, (), generator=seeds.generator(uttid)))

    first = [draw(uttid) for uttid in ("a", "b", "a")]
    torch.rand(5)  # the global generator does not matter
    assert first[0] == first[2] == draw("a") and first[0] != first[1]
    seeds.epoch = 1
    assert (
        draw("a") != first[0]
        and ItemSeeds(1).generator("a").initial_seed() != seeds.generator("a").initial_seed()
    )


def test_deterministic_mode():
    try:
        make_deterministic()
        assert torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.benchmark
    finally:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False
