"""Running the training scripts through their real command line, as a user does."""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from utils.training.recipe import load_hparams as load_hparams_file
from utils.training.train_logger import parse_train_log

__all__ = [
    "DDP_PROBE",
    "QUANTIZER_ARGS",
    "ROOT",
    "RUN_ARGS",
    "SMALL_SPLITS",
    "STEP_PROBE",
    "assert_test_loss_is_batch_mean",
    "build_brain",
    "fit_brain",
    "fixed_batch_steps",
    "free_port",
    "kill_mid_epoch",
    "kill_nodes_mid_epoch",
    "load_hparams",
    "node_commands",
    "padded_batch",
    "parse_train_log",
    "recipe_brain",
    "recipe_command",
    "recipe_env",
    "resume_after_kill",
    "run_ddp_probe",
    "run_nodes",
    "run_recipe",
    "run_torchrun",
    "signal_dataset",
    "tiny_overrides",
    "torchrun_command",
]

ROOT = Path(__file__).resolve().parents[2]
# Training scripts with a probe, run like the scripts
DDP_PROBE = ROOT / "tests" / "helpers" / "ddp_probe.py"
STEP_PROBE = ROOT / "tests" / "helpers" / "step_probe.py"
# The small corpus and the options of the recipe runs shared by the suite (tests/conftest.py)
SMALL_SPLITS = {"train-clean-100": (2, 3), "dev-clean": (1, 2), "test-clean": (1, 2)}
RUN_ARGS = ["--train_batch_size", "2", "--valid_size", "2", "--num_epochs", "1"]
QUANTIZER_ARGS = [*RUN_ARGS, "--train_split", "[train-clean-100]"]


def recipe_env() -> dict[str, str]:
    """Environment of a recipe run: offline hub, 1 thread per process (tests run in parallel with nothing)."""
    env = dict(os.environ)
    env.update({"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"})
    return env


def tiny_overrides(hparams: str) -> Path:
    """The small-model overrides of ``hparams/<hparams>``: ``tiny/bsq.yaml`` for every bsq*.yaml,
    ``tiny/vocos.yaml``, and ``tiny/stream/<name>.yaml`` for ``stream/<name>.yaml``."""
    if hparams.startswith("stream/"):
        return ROOT / "hparams" / "tiny" / hparams
    return ROOT / "hparams" / "tiny" / ("bsq.yaml" if hparams.startswith("bsq") else "vocos.yaml")


def recipe_command(
    script: str, hparams: str, data_folder: Path, output_folder: Path, *extra: str
) -> list[str]:
    """``python <script> hparams/<hparams> --overrides_file <tiny overrides> ...`` on CPU."""
    return [
        sys.executable,
        str(ROOT / script),
        str(ROOT / "hparams" / hparams),
        "--overrides_file",
        str(tiny_overrides(hparams)),
        "--data_folder",
        str(data_folder),
        "--output_folder",
        str(output_folder),
        "--device",
        "cpu",
        *extra,
    ]


def run_recipe(
    script: str,
    hparams: str,
    data_folder: Path,
    output_folder: Path,
    *extra: str,
    check: bool = True,
    probe: bool = False,
) -> subprocess.CompletedProcess:
    """Run a training script to completion; on failure the assertion shows the end of its output. ``probe``:
    through tests/helpers/ddp_probe.py, which also writes what the run did step by step (``probe-0.json``)."""
    env = recipe_env()
    if probe:
        env["PROBE_SCRIPT"] = Path(script).stem
        script = str(DDP_PROBE)
    result = subprocess.run(
        recipe_command(script, hparams, data_folder, output_folder, *extra),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if check:
        assert result.returncode == 0, f"{script} failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    return result


def _mid_epoch_after_an_epoch_end(output_folder: Path) -> bool:
    """An intra-epoch checkpoint saved after a complete end-of-epoch one exists: a kill now interrupts the
    epoch that follows a finished one."""
    metas = []
    for folder in (output_folder / "save").glob("CKPT+*"):
        try:
            metas.append(yaml.safe_load((folder / "CKPT.yaml").read_text()))
        except FileNotFoundError:  # being written or deleted right now
            continue
    ends = [meta["unixtime"] for meta in metas if meta["end-of-epoch"]]
    return bool(ends) and any(not meta["end-of-epoch"] and meta["unixtime"] > max(ends) for meta in metas)


def _children(pid: int) -> list[int]:
    """Direct children of a process (from /proc: this suite runs on Linux)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):  # gone meanwhile
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def kill_tree(pid: int) -> None:
    """``kill -9`` a process and all its descendants: torchrun starts each worker in a session of its own,
    so killing torchrun's process group leaves them running (and holding its output pipes)."""
    pending, found = [pid], []
    while pending:
        found.append(pending.pop())
        pending.extend(_children(found[-1]))
    for process in found:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process, signal.SIGKILL)


def kill_mid_epoch(command: list[str], output_folder: Path, timeout: float = 600) -> None:
    """Start a recipe command and ``kill -9`` it (with every process it started: torchrun's workers too)
    inside an epoch that follows a finished one (as soon as an intra-epoch checkpoint of it exists: run it
    with a small ``--ckpt_interval_steps``). Fails if the run ends before."""
    kill_nodes_mid_epoch([command], output_folder, timeout)


def kill_nodes_mid_epoch(commands: list[list[str]], output_folder: Path, timeout: float = 600) -> None:
    """:func:`kill_mid_epoch` of several commands started together (the nodes of one run): all of them,
    with their process trees, are killed at that moment."""
    with contextlib.ExitStack() as stack:
        logs = [stack.enter_context(tempfile.TemporaryFile("w+")) for _ in commands]
        processes = [
            subprocess.Popen(command, cwd=ROOT, env=recipe_env(), stdout=log, stderr=subprocess.STDOUT)
            for command, log in zip(commands, logs, strict=True)
        ]
        deadline = time.time() + timeout
        while time.time() < deadline and all(process.poll() is None for process in processes):
            if _mid_epoch_after_an_epoch_end(output_folder):
                break
            time.sleep(0.05)
        ended = [process.poll() is not None for process in processes]
        for process in processes:
            kill_tree(process.pid)
            process.wait()
        if any(ended):
            logs[ended.index(True)].seek(0)
            output = logs[ended.index(True)].read()[-5000:]
            raise AssertionError(f"the run finished before it could be killed:\n{output}")


def resume_after_kill(
    script: str, hparams: str, data_folder: Path, output_folder: Path, *extra: str, steps: int
) -> None:
    """Run a stage for 2 epochs (``extra`` sets them, and a small ``--ckpt_interval_steps``), kill it inside
    epoch 2 (:func:`kill_mid_epoch`), run it again: each epoch must be logged once (continued, not
    restarted), and the last checkpoint must count ``steps`` optimizer steps, AdamW's own state included."""
    import torch

    command = recipe_command(script, hparams, data_folder, output_folder, *extra)
    kill_mid_epoch(command, output_folder)
    run_recipe(script, hparams, data_folder, output_folder, *extra)
    epochs = [row["epoch"] for row in parse_train_log(output_folder / "train_log.txt") if "epoch" in row]
    assert epochs == [1, 2], epochs
    checkpoint = max((output_folder / "save").glob("CKPT+*"))
    assert yaml.safe_load((checkpoint / "brain.ckpt").read_text())["optimizer_step"] == steps
    assert int(torch.load(checkpoint / "optimizer.ckpt")["state"][0]["step"]) == steps


def assert_test_loss_is_batch_mean(output_folder: Path) -> None:
    """The test loss a probed run logged (:func:`run_recipe` with ``probe``) is the mean of its test batches'
    losses (to the 6 digits the log keeps)."""
    losses = json.loads((output_folder / "probe-0.json").read_text())["test_losses"]
    logged = parse_train_log(output_folder / "train_log.txt")[-1]["test loss"]
    assert losses, "no test batch was probed"
    mean = sum(losses) / len(losses)
    assert abs(logged - mean) <= 1e-5 * max(abs(mean), 1e-6), (logged, losses)


def run_ddp_probe(
    script: str, hparams: str, data_folder: Path, output_folder: Path, *extra: str, port: int, timeout=900
) -> list[dict]:
    """Run a stage as two gloo processes with the probe of tests/helpers/ddp_probe.py and check what every
    multi-process run must show: both processes trained on different utterances, hold the same weights
    after a step and left the frozen encoder as it was; the test stage ran. Returns both probes. A run
    still going after ``timeout`` seconds (a hang) fails (:func:`run_torchrun`)."""
    command = recipe_command(str(DDP_PROBE), hparams, data_folder, output_folder, *extra)
    env = {**recipe_env(), "PROBE_SCRIPT": Path(script).stem}
    result = run_torchrun(command, port=port, env=env, timeout=timeout)
    assert result.returncode == 0, result.stderr[-5000:]
    assert "test loss" in parse_train_log(output_folder / "train_log.txt")[-1]
    probes = [json.loads((output_folder / f"probe-{rank}.json").read_text()) for rank in (0, 1)]
    assert probes[0]["weights_after_step_1"] == probes[1]["weights_after_step_1"]
    assert {probe["encoder_after_step_1"] for probe in probes} == {probes[0]["encoder"]}
    ids = [set(probe["ids"]) for probe in probes]
    assert ids[0] and ids[1] and not ids[0] & ids[1]
    return probes


def fixed_batch_steps(brain, batch, steps: int) -> list[dict[str, float]]:
    """``steps`` training steps of ``brain`` on the same batch; the figures it tracked at each step."""
    import speechbrain as sb

    figures = []
    for _ in range(steps):
        brain.on_stage_start(sb.Stage.TRAIN, 1)  # fresh running means: this step's figures
        brain.fit_batch(batch)
        figures.append(brain.tracked_means())
    return figures


def torchrun_command(command: list[str], port: int, processes: int = 2) -> list[str]:
    """A ``recipe_command`` as ``torchrun --nproc_per_node=<processes>`` with the gloo backend (CPU)."""
    torchrun = [str(Path(command[0]).parent / "torchrun"), f"--nproc_per_node={processes}"]
    return [*torchrun, f"--master_port={port}", *command[1:], "--distributed_backend=gloo"]


def run_torchrun(
    command: list[str],
    port: int,
    processes: int = 2,
    env: dict[str, str] | None = None,
    timeout: float = 900,
) -> subprocess.CompletedProcess:
    """Run a ``recipe_command`` as :func:`torchrun_command`. A run still going after ``timeout`` seconds
    (a hang) is killed with all its processes, and the test fails showing the end of its output."""
    process = subprocess.Popen(
        torchrun_command(command, port, processes),
        cwd=ROOT,
        env=env or recipe_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_tree(process.pid)
        stdout, stderr = process.communicate()
        raise AssertionError(f"hung: killed after {timeout} s\n{stdout[-2000:]}\n{stderr[-4000:]}") from None
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (for a rendezvous)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def node_commands(command: list[str], port: int, nodes: int = 2) -> list[list[str]]:
    """A ``recipe_command`` as ``nodes`` torchrun "nodes" of one process each on this host, meeting at a
    c10d rendezvous on 127.0.0.1:``port`` (the multi-node commands of docs/training.md), gloo backend."""
    torchrun = str(Path(command[0]).parent / "torchrun")
    rendezvous = ["--rdzv_backend", "c10d", "--rdzv_endpoint", f"127.0.0.1:{port}", "--rdzv_id", "test"]
    script = [*command[1:], "--distributed_backend=gloo"]
    nodes_options = [
        [f"--nnodes={nodes}", f"--node_rank={rank}", "--nproc_per_node=1"] for rank in range(nodes)
    ]
    return [[torchrun, *options, *rendezvous, *script] for options in nodes_options]


def run_nodes(commands: list[list[str]], timeout: float = 900) -> list[subprocess.CompletedProcess]:
    """Run the commands of :func:`node_commands` together to their end; still going after ``timeout``
    seconds (a hang), all are killed with their processes and the test fails showing their output."""
    with contextlib.ExitStack() as stack:
        logs = [stack.enter_context(tempfile.TemporaryFile("w+")) for _ in commands]
        processes = [
            subprocess.Popen(command, cwd=ROOT, env=recipe_env(), stdout=log, stderr=subprocess.STDOUT)
            for command, log in zip(commands, logs, strict=True)
        ]
        deadline, hung = time.time() + timeout, False
        for process in processes:
            try:
                process.wait(timeout=max(1.0, deadline - time.time()))
            except subprocess.TimeoutExpired:
                hung = True
        outputs = []
        for process, log in zip(processes, logs, strict=True):
            kill_tree(process.pid)
            process.wait()
            log.seek(0)
            outputs.append(subprocess.CompletedProcess(process.args, process.returncode, log.read(), ""))
    if hung:
        raise AssertionError(
            f"hung: killed after {timeout} s\n" + "\n".join(o.stdout[-3000:] for o in outputs)
        )
    return outputs


def load_hparams(hparams: str, overrides: dict) -> dict:
    """Load ``hparams/<hparams>`` in-process (a variant with its base), with a dummy data folder and the
    given overrides."""
    return load_hparams_file(str(ROOT / "hparams" / hparams), {"data_folder": "unused", **overrides})


def build_brain(brain_class, hparams: dict):
    """A Brain on CPU without checkpointer, ready for ``fit_batch``/``evaluate_batch`` calls."""
    import speechbrain as sb

    brain = brain_class(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts={"device": "cpu"},
        checkpointer=None,
    )
    brain.on_fit_start()
    brain.on_stage_start(sb.Stage.TRAIN, 1)
    return brain


def padded_batch(*signals):
    """A SpeechBrain PaddedBatch of waveforms, as the data pipeline makes it."""
    from speechbrain.dataio.batch import PaddedBatch

    return PaddedBatch([{"id": f"utt{index}", "sig": sig} for index, sig in enumerate(signals)])


def signal_dataset(signals: list):
    """A dataset of in-memory (N,) waveforms with ids ``utt0``, ``utt1``, ... (items give ``id``, ``sig``)."""
    from speechbrain.dataio.dataset import DynamicItemDataset

    data = {f"utt{index}": {"sig": sig, "duration": len(sig) / 16000} for index, sig in enumerate(signals)}
    return DynamicItemDataset(data, output_keys=["id", "sig"])


def fit_brain(brain, train: list, valid: list, batch_size: int = 1):
    """``brain.fit`` on in-memory waveforms (train shuffled as the recipe does, valid one by one)."""
    brain.fit(
        brain.hparams.epoch_counter,
        signal_dataset(train),
        signal_dataset(valid),
        train_loader_kwargs={"batch_size": batch_size, "shuffle": True},
        valid_loader_kwargs={"batch_size": 1},
    )
    return brain


def recipe_brain(brain_class, hparams: dict, **run_opts):
    """A Brain with the YAML's checkpointer, on CPU, as ``train_and_test`` builds it."""
    return brain_class(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts={"device": "cpu", **run_opts},
        checkpointer=hparams["checkpointer"],
    )
