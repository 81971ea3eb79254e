"""Options checked before any work (utils/training/options.py): every YAML and overrides file of hparams/
passes its own check; bad options are all reported, one line each; through the real command line a bad
option stops the run before preparation or model building."""

import subprocess
from pathlib import Path

import pytest
from helpers.recipe_runner import QUANTIZER_ARGS, ROOT, recipe_command, recipe_env
from ruamel.yaml import YAML

import train_quantizer
from utils.metrics.registry import known_metrics
from utils.training.options import Given, check_command_line, check_options, yaml_keys

HPARAMS = ROOT / "hparams"


def base_yamls() -> list[Path]:
    """The YAMLs a script is given (variants included), not the overrides files."""
    return sorted([*HPARAMS.glob("*.yaml"), *(HPARAMS / "stream").glob("*.yaml")])


def overrides_files() -> dict[Path, list[Path]]:
    """Each overrides file of hparams/ and the YAMLs it is used with."""
    stream = HPARAMS / "stream"
    files = {
        path: [HPARAMS / path.name]
        for folder in ("original", "release")
        for path in (HPARAMS / folder).glob("*")
    }
    files.update({HPARAMS / "tiny" / "bsq.yaml": sorted(HPARAMS.glob("bsq*.yaml"))})
    files.update({HPARAMS / "tiny" / "vocos.yaml": [HPARAMS / "vocos.yaml"]})
    files.update({path: [stream / path.name] for path in (HPARAMS / "tiny" / "stream").glob("*.yaml")})
    files.update(
        {path: [stream / "bsq.yaml", stream / "joint.yaml"] for path in stream.glob("codebook_*.yaml")}
    )
    return files


def is_overrides_file(path: Path) -> bool:
    return path in overrides_files()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """A data folder with every LibriTTS subset folder the YAMLs name (empty: nothing is prepared)."""
    root = tmp_path_factory.mktemp("libritts")
    for subset in ("train-clean-100", "train-clean-360", "train-other-500", "dev-clean", "test-clean"):
        (root / subset).mkdir()
    return root


def required_paths(hparams: Path, corpus: Path) -> list[Given]:
    """The data folder, and a file for every path the YAML requires (!PLACEHOLDER)."""
    given = [Given("data_folder", str(corpus), "--data_folder")]
    defaults, _ = yaml_keys(str(hparams))
    for key, value in defaults.items():
        if key != "data_folder" and getattr(getattr(value, "tag", None), "value", None) == "!PLACEHOLDER":
            given.append(Given(key, str(corpus), f"--{key}"))
    return given


def own_values(path: Path) -> list[Given]:
    document = YAML().load(path.read_text())
    return [
        Given(key, value, f"{key} ({path.name})") for key, value in document.items() if key != "overrides_of"
    ]


def test_every_yaml_and_overrides_file_passes_its_own_check(corpus):
    yamls = [path for path in base_yamls() if not is_overrides_file(path)]
    covered = set(yamls) | set(overrides_files())
    assert covered == set(HPARAMS.rglob("*.yaml")), "a YAML of hparams/ is not checked here: add it"
    for hparams in yamls:
        assert check_options(str(hparams), [*own_values(hparams), *required_paths(hparams, corpus)]) == []
    for overrides, bases in overrides_files().items():
        for hparams in bases:
            problems = check_options(str(hparams), [*required_paths(hparams, corpus), *own_values(overrides)])
            assert problems == [], (overrides, hparams)


def test_all_problems_are_reported_one_line_each(corpus, tmp_path):
    overrides = tmp_path / "mine.yaml"
    overrides.write_text("lr: -1\nnum_epochs: 3\n")
    argv = [str(HPARAMS / "bsq.yaml"), "--data_folder", str(corpus), "--overrides_file", str(overrides)]
    argv += ["--num_epochs", "0", "--lrr", "1", "--precision", "fp8", "--sorting", "shuffled", "--debug", "x"]
    argv += [
        "--betas",
        "[0.9, 1.5]",
        "--metrics",
        "[utmos, mos]",
        "--encoder_checkpoint",
        str(tmp_path / "no.pt"),
    ]
    problems, _ = check_command_line(argv)
    assert problems == [
        "--debug x: a flag: give it alone, or True or False",
        f"lr: -1 ({overrides}): must be a number >= 0",
        "--num_epochs 0: must be an integer >= 1",
        "--lrr: unknown option; did you mean --lr?",
        "--sorting shuffled: must be one of random, ascending, descending",
        "--betas [0.9, 1.5]: must be a list of numbers >= 0 and < 1",
        f"--metrics [utmos, mos]: must be a list of values from {', '.join(known_metrics())}",
        "--precision fp8: must be one of fp32, fp16, bf16",
        f"--encoder_checkpoint {tmp_path / 'no.pt'}: no such file or folder",
    ]


def test_a_good_command_line_passes_and_flags_take_true_or_false(corpus):
    argv = [str(HPARAMS / "vocos.yaml"), "--data_folder", str(corpus), "--lr=0.001", "--compile", "True"]
    argv += ["--debug", "--noprogressbar", "False", "--device", "cpu", "--ckpt_interval_steps", "5"]
    problems, passed = check_command_line(argv)
    assert problems == []
    kept = [argv[0], "--data_folder", str(corpus), "--lr", "0.001", "--compile", "--debug"]
    assert passed == [*kept, "--device", "cpu", "--ckpt_interval_steps", "5"]


def test_paths_and_splits_that_must_exist(corpus, tmp_path):
    yaml = str(HPARAMS / "stream" / "wavlm.yaml")
    problems = check_options(yaml, [Given("data_folder", str(tmp_path / "none"), "--data_folder x")])
    assert problems[0].startswith("--data_folder x: no such file or folder. --data_folder must be")
    assert len(problems) == 1  # the posemb checkpoint is not required: --init_from may give the student
    given = [
        Given("data_folder", str(corpus), "--data_folder"),
        Given("train_split", ["no-such"], "--train_split [no-such]"),
    ]
    problems = check_options(str(HPARAMS / "vocos.yaml"), given)
    assert len(problems) == 1 and problems[0].startswith(
        f"--train_split [no-such]: no folder no-such in {corpus}"
    )
    download = [*given, Given("download", True, "--download True")]  # a LibriTTS subset may be downloaded
    assert (
        check_options(
            str(HPARAMS / "vocos.yaml"),
            [*download[:1], Given("train_split", ["train-other-500"], ""), download[2]],
        )
        == []
    )
    assert len(check_options(str(HPARAMS / "vocos.yaml"), download)) == 1  # but not a made-up one


BAD = {
    "--lr abc": "error: --lr abc: must be a number >= 0",
    "--num_epochs -1": "error: --num_epochs -1: must be an integer >= 1",
    "--lrr 0.1": "error: --lrr: unknown option; did you mean --lr?",
    "--precision fp8": "error: --precision fp8: must be one of fp32, fp16, bf16",
    "--train_split [no-such]": "error: --train_split [no-such]: no folder no-such in",
}


@pytest.mark.parametrize("option", BAD)
def test_a_bad_option_stops_before_any_work(option, small_corpus, tmp_path):
    """Each of the issue's five, given to the script's ``main`` (in this process: no start-up to pay): one
    line naming the option, and nothing done: no output folder (made before the manifests and models)."""
    output = tmp_path / "run"
    command = recipe_command("train_quantizer.py", "bsq.yaml", small_corpus, output, *QUANTIZER_ARGS)
    with pytest.raises(SystemExit) as stop:
        train_quantizer.main([*command[2:], *option.split()])
    lines = str(stop.value).splitlines()
    assert len(lines) == 1 and lines[0].startswith(BAD[option]), lines
    assert not output.exists()


def test_the_command_line_stops_with_one_line_per_problem(small_corpus, tmp_path):
    """Through the real command line: exit status 1, one line per bad option, no traceback, nothing done."""
    output = tmp_path / "run"
    command = recipe_command("train_quantizer.py", "bsq.yaml", small_corpus, output, *QUANTIZER_ARGS)
    command += ["--lr", "abc", "--lrr", "0.1"]
    process = subprocess.run(command, cwd=ROOT, env=recipe_env(), capture_output=True, text=True, timeout=300)
    lines = [line for line in process.stderr.splitlines() if line.startswith("error:")]
    assert process.returncode == 1 and lines == [BAD["--lr abc"], BAD["--lrr 0.1"]], process.stderr
    assert "Traceback" not in process.stderr and not output.exists()
