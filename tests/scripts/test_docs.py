"""The documentation runs as written: every shell command in a code block of the README and docs/*.md names
scripts, modules, YAML and override files that exist and only options that exist (YAML keys, SpeechBrain
run options, or options of the script's own parser, read from its ``--help``); every link points to an
existing file and heading; and the ``parts.json`` of real runs of every stage validates against the
run folder's JSON schema (docs/run-folder.schema.json)."""

import contextlib
import importlib.util
import io
import json
import re
import runpy
import shlex
import sys
from functools import cache
from pathlib import Path
from unittest import mock

import jsonschema
import pytest
import speechbrain as sb
from ruamel.yaml import YAML
from torch.distributed.run import get_args_parser

from utils.training.recipe import VARIANT_KEY
from utils.training.stages.decoder import DecoderStage
from utils.training.stages.encoder import EncoderStage
from utils.training.stages.joint import JointStage
from utils.training.stages.posemb import PosembStage
from utils.training.stages.quantizer import QuantizerStage

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks" / "README.md"]
SCHEMA = ROOT / "docs" / "run-folder.schema.json"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
PYTHON = ("python", "python3", ".venv/bin/python")
UNCHECKED = ("source", ".venv/bin/tensorboard")  # commands of other tools: nothing of ours to check
OWN_OPTIONS = {"overrides_file"}  # utils/training/recipe.py's, besides SpeechBrain's and the YAML keys
STAGES = ("decoder", "quantizer", "posemb", "encoder", "joint")  # the run-folder stages


def shell_commands(doc: Path) -> list[tuple[str, list[str]]]:
    """``(where, tokens)`` of every command in the doc's ``bash`` blocks (continuations joined, comments and
    leading ``NAME=value`` assignments dropped)."""
    text, commands = doc.read_text(), []
    for match in FENCE.finditer(text):
        if match.group(1) not in ("bash", "sh", "shell"):
            continue
        first = text[: match.start(2)].count("\n") + 1
        for line in re.findall(r"(?:.*\\\n)*.*\n", match.group(2)):  # a command and its continuations
            tokens = shlex.split(line.replace("\\\n", " "), comments=True)
            while tokens and re.fullmatch(r"[A-Za-z_]\w*=\S*", tokens[0]):
                tokens.pop(0)
            if tokens:
                commands.append((f"{doc.relative_to(ROOT)}:{first} {' '.join(tokens[:3])}", tokens))
            first += line.count("\n")
    return commands


def options(args: list[str]) -> list[str]:
    """The ``--key`` names of a command line (``--key value`` or ``--key=value``)."""
    return [arg[2:].split("=", 1)[0] for arg in args if arg.startswith("--")]


def help_options(text: str) -> set[str]:
    """The options an argparse ``--help`` lists (its option lines, not its description)."""
    lines = [line.strip() for line in text.splitlines() if line.strip().startswith("-")]
    heads = (re.split(r"\s{2,}", line)[0] for line in lines)
    return {name[2:] for head in heads for name in re.findall(r"--[\w-]+", head)}


@cache
def parser_options(target: str, *argv: str) -> set[str]:
    """The options of a script (``x.py``) or module (``-m mod``), read from its ``--help``, in-process."""
    out = io.StringIO()
    run = target[3:] if target.startswith("-m ") else None
    argv_patch = mock.patch.object(sys, "argv", [target, *argv, "--help"])
    with argv_patch, contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        runpy.run_module(run, run_name="__main__") if run else runpy.run_path(target, run_name="__main__")
    assert "usage:" in out.getvalue(), f"{target} {' '.join(argv)} --help printed no usage"
    return help_options(out.getvalue())


@cache
def speechbrain_options() -> set[str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        sb.parse_arguments(["--help"])
    return help_options(out.getvalue())


def yaml_keys(path: Path) -> set[str]:
    """The top-level keys of a YAML, through its ``overrides_of`` base if it is a variant."""
    document = dict(YAML().load(path.read_text()) or {})
    base = document.pop(VARIANT_KEY, None)
    return set(document) | (yaml_keys(path.parent / base) if base else set())


def files_of(value: str) -> list[str]:
    """One file, or the files of a ``[FILE1,FILE2]`` list."""
    return [item.strip() for item in value.strip("[]").split(",")]


def check_training_command(script: str, args: list[str]) -> list[str]:
    """Errors of ``python train_x.py hparams.yaml --key value ...``."""
    hparams = ROOT / args[0]
    if not hparams.is_file():
        return [f"no YAML {args[0]}"]
    known = yaml_keys(hparams)
    errors = []
    for index, arg in enumerate(args):
        if arg == "--overrides_file":
            for name in files_of(args[index + 1]):
                if not (ROOT / name).is_file():
                    errors.append(f"no overrides file {name}")
                elif extra := yaml_keys(ROOT / name) - known:
                    errors.append(f"{name} sets keys {args[0]} does not have: {sorted(extra)}")
    unknown = set(options(args)) - known - speechbrain_options() - OWN_OPTIONS
    return errors + [f"--{name} is no key of {args[0]} nor a run option" for name in sorted(unknown)]


def check_command(tokens: list[str]) -> list[str]:
    """What in a documented command would not run as written (empty: nothing)."""
    program, args = tokens[0], tokens[1:]
    if program in UNCHECKED:
        return []
    if program == "srun":  # SLURM's launcher (docs/training.md's batch script): check what it starts
        return check_command(args)
    if program == "torchrun":
        torchrun, args = get_args_parser().parse_known_args(args)
        return check_command(["python", torchrun.training_script, *torchrun.training_script_args, *args])
    if program == "bash":
        if not (ROOT / args[0]).is_file():
            return [f"no script {args[0]}"]
        usage = re.search(r"usage: bash \S+ (.*?)\"", (ROOT / args[0]).read_text())
        allowed = set(re.findall(r"\w+", usage.group(1))) if usage else set()
        return [f"{args[0]} takes no argument {arg}" for arg in args[1:] if arg not in allowed]
    if program not in PYTHON:
        return [f"{program}: a command this test does not know how to check"]
    if args[0] == "-m":
        module, args = args[1], args[2:]
        if importlib.util.find_spec(module) is None:
            return [f"no module {module}"]
        if module == "pytest":
            return []
        sub = [args[0]] if module == "focalcodec.cli" else []
        unknown = set(options(args)) - parser_options(f"-m {module}", *sub)
        return [f"python -m {module} {' '.join(sub)} has no option --{name}" for name in sorted(unknown)]
    script = ROOT / args[0]
    if not script.is_file():
        return [f"no script {args[0]}"]
    if script.name.startswith("train_"):
        return check_training_command(args[0], args[1:])
    unknown = set(options(args[1:])) - parser_options(str(script))
    return [f"{args[0]} has no option --{name}" for name in sorted(unknown)]


COMMANDS = [command for doc in DOCS for command in shell_commands(doc)]


def test_docs_have_commands():
    """The extraction finds the commands it is meant to check (the README's two and its recipes')."""
    programs = {" ".join(tokens[:2]) for _, tokens in COMMANDS}
    assert {"bash quickstart.sh", ".venv/bin/python -m", "python train_joint.py"} <= programs
    assert len(COMMANDS) > 40


@pytest.mark.parametrize(("where", "tokens"), COMMANDS, ids=[where for where, _ in COMMANDS])
def test_documented_command_runs_as_written(where, tokens):
    assert check_command(tokens) == []


def test_misspelt_options_are_caught():
    """The checks above fail on what a typo in the docs would give."""
    assert check_command(["python", "train_quantizer.py", "hparams/bsq.yaml", "--data_foldr", "x"])
    assert check_command(["python", "train_quantizer.py", "hparams/bsq.yaml", "--overrides_file", "a.yaml"])
    assert check_command(["python", "export_codec.py", "--quantiser", "x"])
    assert check_command(["python", "-m", "focalcodec.cli", "encode", "x", "--batchsize", "8"])
    assert check_command(["torchrun", "--nproc_per_node=2", "train_decoder.py", "hparams/vocos.yml"])
    assert check_command(
        ["srun", "torchrun", "--nnodes=2", "train_decoder.py", "hparams/vocos.yaml", "--shards", "x"]
    )
    assert check_command(["python", "-m", "utils.corpus.shards", "out", "--datafolder", "x"])
    assert check_command(["bash", "quickstart.sh", "streaming"])


def slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(doc: Path) -> set[str]:
    text = FENCE.sub("", doc.read_text())
    return {slug(line.lstrip("#")) for line in text.splitlines() if re.match(r"#{1,6} ", line)}


@pytest.mark.parametrize("doc", DOCS, ids=[str(doc.relative_to(ROOT)) for doc in DOCS])
def test_links_point_to_existing_files_and_headings(doc):
    broken = []
    for target in LINK.findall(FENCE.sub("", doc.read_text())):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        file = (doc.parent / path).resolve() if path else doc
        if not file.exists() or (anchor and anchor not in anchors(file)):
            broken.append(target)
    assert broken == []


def test_schema_names_every_stage_and_part():
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    brains = (DecoderStage, QuantizerStage, PosembStage, EncoderStage, JointStage)
    assert set(schema["properties"]["stage"]["enum"]) == {brain.stage for brain in brains} == set(STAGES)
    part_names = set(schema["properties"]["parts"]["propertyNames"]["enum"])
    assert {part for brain in brains for part in brain.trained_parts} | {"encoder"} <= part_names


@pytest.mark.slow
def test_parts_json_of_every_stage_matches_the_schema(quantizer_run, joint_run):
    """The runs of the session: the quantizer stage, and the five FocalCodec-Stream stages joint_run chains
    (wavenext, posemb, wavlm, stream_bsq, joint)."""
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text()))
    chain = [joint_run.parent / name for name in ("wavenext", "posemb", "wavlm", "stream_bsq")]
    runs = [quantizer_run, *chain, joint_run]
    records = {run.name: json.loads((run / "parts.json").read_text()) for run in runs}
    assert {record["stage"] for record in records.values()} == set(STAGES)
    for name, record in records.items():
        assert [error.message for error in validator.iter_errors(record)] == [], name
    broken = dict(records["joint"], teacher=None)
    assert list(validator.iter_errors(broken))
