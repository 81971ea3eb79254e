"""Checking a training command line before any work: every option a user gives (on the command line, in an
``--overrides_file`` or in a variant YAML) is known, of the type of the YAML's own value, and in its range
(learning rates and loss weights > 0, counts >= 1, precision and corpus format from their sets, splits and
paths that exist). All problems are reported together, one line each naming the option, the value and what
is allowed; an unknown option names the closest known ones ("--lrr: unknown option; did you mean --lr?").

The types come from the YAML's own values (a ``!ref`` or other tagged value is not checked, except where
:data:`RULES` names the key); :data:`RULES` adds the ranges and sets. SpeechBrain's run options (``--device``,
``--precision``, ``--debug``, ...) are checked too: a flag also takes ``True`` or ``False`` (``--compile
True``; ``False`` leaves the YAML's value).
"""

import difflib
import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError
from speechbrain.utils.run_opts import HELP_TEXTS, RunOptions

from utils.corpus import CORPUS_FORMATS, SPLITS
from utils.corpus.download import LIBRITTS_SHA256
from utils.metrics.registry import known_metrics
from utils.training.progress import METRICS as PROGRESS_METRICS

__all__ = ["LAYOUT_HINT", "VARIANT_KEY", "Given", "Rule", "check_command_line", "check_options", "yaml_keys"]

VARIANT_KEY = "overrides_of"
OVERRIDES_KEY = "overrides_file"

LAYOUT_HINT = (
    "--data_folder must be the LibriTTS root, holding one folder per subset, e.g. "
    "<data_folder>/train-clean-100/<speaker>/<chapter>/<utterance>.wav (https://www.openslr.org/60; "
    "--download True fetches the missing subsets); with --corpus_format folder, the root of any tree of "
    "audio files (wav, flac, ogg, mp3); with --corpus_format list, a CSV/TSV/JSON file listing audio files "
    "(or give it as --corpus_list). See docs/training.md, 'Training on your own data'."
)


class Given(NamedTuple):
    """One option as the user gave it."""

    key: str
    value: Any  # as YAML reads it (a flag without value: True)
    where: str  # how it reads in a message: "--lr abc" or "lr: abc (hparams/tiny/bsq.yaml)"


@dataclass(frozen=True)
class Rule:
    """What a key accepts: ``kind`` int, number, bool, str, list or dict; a range (``low``/``high``, open
    ends with ``*_open``), a set of ``choices``, ``None`` when ``nullable``, each item's rule for a list."""

    kind: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple = ()
    nullable: bool = False
    items: "Rule | None" = None

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.nullable
        if self.kind == "list":
            return isinstance(value, list) and all(self.items is None or self.items.accepts(v) for v in value)
        if self.choices:
            return value in self.choices
        if not isinstance(value, TYPES[self.kind]) or (self.kind in ("int", "number") and value is True):
            return False
        if self.kind not in ("int", "number") or isinstance(value, bool):
            return True
        below = self.low is not None and (value <= self.low if self.low_open else value < self.low)
        above = self.high is not None and (value >= self.high if self.high_open else value > self.high)
        return not (below or above)

    def describe(self) -> str:
        if self.kind == "list" and self.items is not None and self.items.choices:
            return f"a list of values from {', '.join(map(str, self.items.choices))}"
        if self.kind == "list":
            return "a list" + (f" of {_plural(self.items.describe())}" if self.items else "")
        text = f"one of {', '.join(map(str, self.choices))}" if self.choices else NOUNS[self.kind]
        bounds = []
        if self.low is not None:
            bounds.append(f"{'>' if self.low_open else '>='} {self.low}")
        if self.high is not None:
            bounds.append(f"{'<' if self.high_open else '<='} {self.high}")
        return text + (" " + " and ".join(bounds) if bounds else "") + (", or null" if self.nullable else "")


TYPES = {"int": int, "number": int | float, "bool": bool, "str": str | int | float, "dict": dict}
NOUNS = {
    "int": "an integer",
    "number": "a number",
    "bool": "True or False",
    "str": "a string",
    "dict": "a map",
}


def _plural(description: str) -> str:
    for article in ("an ", "a "):
        if description.startswith(article):
            head, _, rest = description[len(article) :].partition(" ")
            return f"{head}s {rest}".strip()
    return description


COUNT, COUNT_OR_NULL = Rule("int", low=1), Rule("int", low=1, nullable=True)
NON_NEGATIVE_INT, POSITIVE = Rule("int", low=0), Rule("number", low=0, low_open=True)
NON_NEGATIVE = Rule("number", low=0)
FACTOR = Rule("number", low=0, high=1, low_open=True)
PRECISIONS = Rule("str", choices=("fp32", "fp16", "bf16"))
SPLIT_NAMES = Rule("list", items=Rule("str"))

COUNTS = ("num_epochs", "valid_freq", "keep_checkpoints", "num_buckets", "max_batch_size", "valid_size")
COUNTS += ("grad_accumulation_factor", "sample_rate", "quantizer_code_dim")
COUNTS += ("discriminator_channels_divisor", "generator_hop_length", "decoder_hop_length", "n_mel_channels")
COUNTS += tuple(f"{split}_batch_size" for split in SPLITS)
ZERO_OR_MORE = ("dataloader_workers", "num_saved_audios", "progress_utterances", "progress_every_steps")
ZERO_OR_MORE += (
    "patient",
    "ckpt_interval_steps",
    "nonfinite_patience",
    "valid_metrics_every",
    "prepare_seed",
)
POSITIVES = (
    "power",
    "feature_cache_shard_mb",  # a fraction of a MB too (one utterance per shard, in tests)
    *(f"{split}_{key}" for split in SPLITS for key in ("remove_if_longer", "max_batch_length")),
)

RULES: dict[str, Rule] = {
    **dict.fromkeys(COUNTS, COUNT),
    **dict.fromkeys(("segment_size_feats", "segment_size"), COUNT_OR_NULL),
    **dict.fromkeys(ZERO_OR_MORE, NON_NEGATIVE_INT),
    "seed": Rule("int", low=0, high=2**32 - 1),
    **dict.fromkeys(POSITIVES, POSITIVE),
    "max_grad_norm": Rule("number", low=0, low_open=True, nullable=True),
    **dict.fromkeys(("weight_decay", "min_duration", "improvement_threshold", "mel_fmin"), NON_NEGATIVE),
    "lr": NON_NEGATIVE,  # 0 keeps the weights (a fine-tuning check, or only testing a pretrained model)
    **dict.fromkeys(("decay_factor", "annealing_factor"), FACTOR),
    "augment_prob": Rule("number", low=0, high=1),
    **dict.fromkeys(("valid_proportion", "test_proportion"), Rule("number", low=0, high=1, high_open=True)),
    "betas": Rule("list", items=Rule("number", low=0, high=1, high_open=True)),
    **dict.fromkeys(("precision", "eval_precision"), PRECISIONS),
    "corpus_format": Rule("str", choices=CORPUS_FORMATS, nullable=True),
    "sorting": Rule("str", choices=("random", "ascending", "descending")),
    "feature_cache_dtype": Rule("str", choices=("float16", "float32")),
    "init_from_encoder": Rule("str", choices=("encoder", "student_encoder", "student_posemb"), nullable=True),
    "compile_mode": Rule("str", choices=("default", "reduce-overhead", "max-autotune")),
    "distributed_backend": Rule("str", choices=("nccl", "gloo", "mpi")),
    "feature_cache_stages": Rule("list", items=Rule("str", choices=SPLITS)),
    "progress_metrics": Rule("list", items=Rule("str", choices=PROGRESS_METRICS)),
    "metrics": Rule("list", items=Rule("str", choices=known_metrics())),
    "compile_module_keys": Rule("list", items=Rule("str"), nullable=True),
    **{f"{split}_split": SPLIT_NAMES for split in SPLITS},
}
"""Ranges and sets by key; besides, every ``*_weight`` is a number > 0 and every ``*_weights`` a list of
them. Other keys take the type of the YAML's value (any type where it is null or tagged)."""

# Paths that must exist when given (not null); a !PLACEHOLDER one is required
PATH_KEYS = ("encoder_checkpoint", "decoder_checkpoint", "quantizer_checkpoint")
PATH_KEYS += ("student_encoder_posemb_checkpoint",)
RUN_OPTIONS = {name: getattr(RunOptions(), name, None) for name in HELP_TEXTS}
RUN_OPTIONS.update(jit_module_keys=None, compile_module_keys=None)


@functools.lru_cache(maxsize=64)
def _read_yaml(path: str) -> dict[str, Any]:
    """A YAML file's top-level values as ruamel reads them (round trip: tags kept); read once per path."""
    with open(path) as stream:
        return dict(YAML().load(stream) or {})


def yaml_keys(hparams_file: str) -> tuple[dict[str, Any], list[Given]]:
    """The raw top-level values of a YAML (tagged values as ruamel reads them), and, for a variant
    (``overrides_of: <base>``), those of its base with the variant's keys as given options."""
    document = dict(_read_yaml(hparams_file))
    if VARIANT_KEY not in document:
        return document, []
    base = Path(hparams_file).parent / document.pop(VARIANT_KEY)
    defaults, given = yaml_keys(str(base))
    return defaults, [
        *given,
        *(Given(key, value, f"{key}: {value} ({hparams_file})") for key, value in document.items()),
    ]


def _tagged(value: Any) -> bool:
    """A YAML value with a tag (``!ref``, ``!new:...``, ``!PLACEHOLDER``): its meaning is not known here."""
    return bool(getattr(getattr(value, "tag", None), "value", None))


def _rule(key: str, default: Any) -> Rule | None:
    """The rule of a key: :data:`RULES`, the ``*_weight(s)`` pattern, or the type of its YAML value."""
    if key in RULES:
        return RULES[key]
    if key.endswith("_weight"):
        return POSITIVE
    if key.endswith("_weights"):
        return Rule("list", items=POSITIVE)
    if default is None or _tagged(default):
        return None  # null or tagged (!ref, !new, ...): any value
    for kind in ("bool", "int", "number", "str", "dict"):
        if isinstance(default, TYPES[kind]):
            return Rule(kind)
    return Rule("list") if isinstance(default, list) else None


def _value_problems(defaults: dict[str, Any], given: list[Given]) -> list[str]:
    known = sorted({*defaults, *RUN_OPTIONS, OVERRIDES_KEY})
    problems = []
    for item in given:
        if item.key not in known:
            close = difflib.get_close_matches(item.key, known, n=3, cutoff=0.75)
            hint = (
                f"did you mean {' or '.join('--' + key for key in close)}?"
                if close
                else "not a key of the YAML"
            )
            problems.append(f"--{item.key}: unknown option; {hint}")
            continue
        rule = _rule(item.key, defaults.get(item.key, RUN_OPTIONS.get(item.key)))
        if rule is not None and not _tagged(item.value) and not rule.accepts(item.value):
            problems.append(f"{item.where}: must be {rule.describe()}")
    return problems


def _is_placeholder(value: Any) -> bool:
    return _tagged(value) and value.tag.value == "!PLACEHOLDER"


def _exists(path: Any, folder: str | None = None) -> bool:
    return os.path.exists(os.path.join(folder or "", os.fspath(path)))


def _path_problems(values: dict[str, Any], where: dict[str, str]) -> list[str]:
    """data_folder, the checkpoint paths, the corpus list and set folders, and the LibriTTS splits."""
    data, corpus_format = values.get("data_folder"), values.get("corpus_format") or "libritts"
    problems = []
    if _is_placeholder(data):
        return [f"--data_folder is required. {LAYOUT_HINT}"]
    download = corpus_format == "libritts" and values.get("download") is True
    if isinstance(data, str) and not _exists(data) and not download:
        problems.append(f"{where['data_folder']}: no such file or folder. {LAYOUT_HINT}")
    for key in PATH_KEYS:
        if _is_placeholder(values.get(key)):
            problems.append(f"--{key}: required (a path)")
        elif isinstance(values.get(key), str) and not _exists(values[key]):
            problems.append(f"{where[key]}: no such file or folder")
    folder = data if isinstance(data, str) and _exists(data) else None
    relative = {"list": ("corpus_list",), "folder": tuple(f"{split}_folder" for split in SPLITS)}
    for key in relative.get(corpus_format, ()) if folder else ():
        if isinstance(values.get(key), str) and not _exists(values[key], folder):
            problems.append(f"{where[key]}: no such file or folder in {folder} (nor an absolute path)")
    if corpus_format == "libritts" and folder and not values.get("skip_prep"):
        problems.extend(_split_problems(values, where, folder, download))
    return problems


def _split_problems(values: dict[str, Any], where: dict[str, str], folder: str, download: bool) -> list[str]:
    """Each LibriTTS split is a folder of ``data_folder`` (or a subset to download with ``download``)."""
    problems = []
    for key in (f"{split}_split" for split in SPLITS):
        splits = [values[key]] if isinstance(values.get(key), str) else values.get(key) or []
        missing = [s for s in splits if not _exists(s, folder) and not (download and s in LIBRITTS_SHA256)]
        if missing:
            hint = "" if download else "; --download True fetches a LibriTTS subset"
            problems.append(
                f"{where[key]}: no folder {', '.join(map(str, missing))} in {folder} (LibriTTS subsets: "
                f"{', '.join(LIBRITTS_SHA256)}{hint})"
            )
    return problems


def check_options(hparams_file: str, given: list[Given]) -> list[str]:
    """The problems of ``given`` options (in the order they apply: a later one wins) for ``hparams_file``
    (a variant's own keys included), one line each; empty when all is well."""
    defaults, variant = yaml_keys(hparams_file)
    given = [*variant, *given]
    problems = _value_problems(defaults, given)
    values, where = dict(defaults), {key: f"--{key}" for key in defaults}
    for item in given:
        values[item.key], where[item.key] = item.value, item.where
    return problems + _path_problems(values, where)


def _yaml_value(text: str) -> Any:
    """A command-line value as SpeechBrain passes it on (a line of YAML); ``ValueError`` if unreadable."""
    try:
        return YAML(typ="safe", pure=True).load(f"value: {text}")["value"]
    except YAMLError as error:
        raise ValueError(" ".join(str(error).split())) from error


def _run_option(name: str, tokens: list[str]) -> tuple[Any, list[str]]:
    """The value of a SpeechBrain run option and its tokens for SpeechBrain's parser (``ValueError``)."""
    default, text = RUN_OPTIONS[name], " ".join(tokens)
    if default is False:  # a flag: alone, or True/False
        if tokens in ([], ["True"]):
            return True, [f"--{name}"]
        if tokens == ["False"]:
            return False, []
        raise ValueError("a flag: give it alone, or True or False")
    if not tokens:
        raise ValueError("needs a value")
    if isinstance(default, int | float) and not isinstance(default, bool):
        try:
            return type(default)(text), [f"--{name}", *tokens]
        except ValueError:
            raise ValueError(f"must be {NOUNS['int' if isinstance(default, int) else 'number']}") from None
    return (tokens if name.endswith("_module_keys") else text), [f"--{name}", *tokens]


def _option(name: str, tokens: list[str]) -> tuple[Any, list[str]]:
    """The value of one command-line option and its tokens for SpeechBrain's parser (``ValueError``)."""
    if name in RUN_OPTIONS:
        return _run_option(name, tokens)
    return _yaml_value(" ".join(tokens)), [f"--{name}", *tokens]


def _overrides_files(value: Any, where: str) -> tuple[list[Given], list[str]]:
    """The keys of the ``--overrides_file`` files, in order, and the problems reading them."""
    given, problems = [], []
    for path in [value] if isinstance(value, str) else value if isinstance(value, list) else [None]:
        if not isinstance(path, str) or not os.path.isfile(path):
            problems.append(
                f"{where}: no such file {path}" if isinstance(path, str) else f"{where}: not a file"
            )
            continue
        with open(path) as stream:
            keys = dict(YAML().load(stream) or {})
        given.extend(Given(key, item, f"{key}: {item} ({path})") for key, item in keys.items())
    return given, problems


def _split_command_line(argv: list[str]) -> list[tuple[str, list[str]]]:
    """``--key value ...`` / ``--key=value`` pairs after the YAML file, each with its value tokens."""
    options: list[tuple[str, list[str]]] = []
    for token in argv[1:]:
        if token.startswith("--"):
            name, equals, value = token[2:].partition("=")
            options.append((name, [value] if equals else []))
        elif options:
            options[-1][1].append(token)
        else:
            options.append(("", [token]))
    return options


def check_command_line(argv: list[str]) -> tuple[list[str], list[str]]:
    """The problems of a training command line (``hparams.yaml --key value ...``), one line each, and the
    command line for SpeechBrain's parser (flags given ``True``/``False`` as it reads them)."""
    if not argv or argv[0].startswith("-") or not os.path.isfile(argv[0]):
        return [f"{argv[0] if argv else 'the YAML file'}: no such YAML file (the first argument)"], argv
    given, run_given, problems, passed = [], [], [], [argv[0]]
    for name, tokens in _split_command_line(argv):
        where = f"--{name} {' '.join(tokens)}".strip()
        if not name:
            problems.append(f"{' '.join(tokens)}: an extra argument (options are --key value)")
            continue
        try:
            value, tokens_out = _option(name, tokens)
        except ValueError as error:
            problems.append(f"{where}: {error}")
            continue
        passed.extend(tokens_out)
        if name == OVERRIDES_KEY:
            from_files, unreadable = _overrides_files(value, where)
            given, problems = [*from_files, *given], problems + unreadable
        else:
            (run_given if name in RUN_OPTIONS else given).append(Given(name, value, where))
    return problems + check_options(argv[0], given + run_given), passed
