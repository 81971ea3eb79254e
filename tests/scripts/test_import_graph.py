"""The layers of the code, read from its import graph (ast): every package imports only the layers before it,
no module imports a script, no import cycle, and no function-level import of our own modules. And the
stages' Brains still import from the scripts by their names before the stages were named."""

import ast
import importlib
from pathlib import Path

import pytest
from helpers.recipe_runner import ROOT

from utils.training.stages.decoder import DecoderStage
from utils.training.stages.encoder import EncoderStage
from utils.training.stages.joint import JointStage
from utils.training.stages.posemb import PosembStage
from utils.training.stages.quantizer import QuantizerStage

# In dependency order: a package may import itself and the packages before it, never one after it
LAYERS = [
    ("focalcodec",),
    ("utils.corpus", "utils.sample_corpus"),
    ("utils.metrics",),
    ("utils.runs",),
    ("utils.evaluation",),
    ("utils.feature_cache",),
    ("utils.training",),
    ("benchmarks",),
]
SCRIPTS = ("train_decoder", "train_quantizer", "train_posemb", "train_encoder", "train_joint")
SCRIPTS += ("export_codec", "evaluate_codec", "libritts_prepare")
OURS = ("focalcodec", "utils", "benchmarks", *SCRIPTS)


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sources(root: Path) -> dict[str, Path]:
    """Our modules (not the tests, not the ``utils`` namespace itself) by name."""
    files = [*root.glob("*.py"), *root.glob("focalcodec/**/*.py"), *root.glob("utils/**/*.py")]
    files += root.glob("benchmarks/**/*.py")
    return {module_name(path, root): path for path in files if path != root / "utils" / "__init__.py"}


def imports(path: Path) -> tuple[set[str], list[str]]:
    """The modules of ours ``path`` imports at module level, and its function-level imports of ours."""
    tree = ast.parse(path.read_text())
    top, nested = set(), []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        ours = [name for name in names if name.split(".")[0] in OURS]
        if not ours:
            continue
        if node in tree.body:
            top.update(ours)
        else:
            nested.append(f"{path.name}:{node.lineno} {ours[0]}")
    return top, nested


def layer(module: str) -> int | None:
    """The module's layer (``len(LAYERS)`` for a script), ``None`` if it is none of ours."""
    if module.split(".")[0] in SCRIPTS:
        return len(LAYERS)
    for index, packages in enumerate(LAYERS):
        if any(module == package or module.startswith(package + ".") for package in packages):
            return index
    return None


def graph(root: Path) -> tuple[dict[str, set[str]], list[str]]:
    """Module -> the modules of ours it imports at module level (names resolved to existing modules), and
    every function-level import of ours."""
    modules = sources(root)
    edges, nested = {}, []
    for name, path in modules.items():
        top, inner = imports(path)
        nested += inner
        edges[name] = {target for target in top if target in modules and target != name}
    return edges, nested


def layer_violations(edges: dict[str, set[str]]) -> list[str]:
    problems = []
    for source, targets in edges.items():
        for target in targets:
            if layer(target) == len(LAYERS):
                problems.append(f"{source} imports the script {target}")
            elif layer(target) > layer(source):
                problems.append(f"{source} (layer {layer(source)}) imports {target} (layer {layer(target)})")
    return problems


def cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as the list of its modules, or ``None``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node], found = 1, None
        path.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (found := visit(target)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_every_module_has_a_layer():
    assert [name for name in sources(ROOT) if layer(name) is None] == []


def test_layers_only_point_down():
    edges, _ = graph(ROOT)
    assert layer_violations(edges) == []


def test_no_import_cycle():
    edges, _ = graph(ROOT)
    assert cycle(edges) is None


def test_no_function_level_import_of_our_modules():
    assert graph(ROOT)[1] == []


def test_the_checks_catch_what_they_look_for(tmp_path):
    """A cycle, an import of a later layer and a function-level import, in a copy of two modules."""
    for name in ("corpus/__init__.py", "corpus/audio.py"):
        (tmp_path / "utils" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "utils" / name).write_text((ROOT / "utils" / name).read_text())
    audio = tmp_path / "utils/corpus/audio.py"
    audio.write_text(
        audio.read_text() + "\nfrom utils.corpus import SPLITS\nfrom utils.runs import read_run\n"
    )
    edges, _ = graph(tmp_path)
    assert cycle(edges) == ["utils.corpus", "utils.corpus.audio", "utils.corpus"]
    assert layer_violations({"utils.corpus.audio": {"utils.runs"}}) == [
        "utils.corpus.audio (layer 1) imports utils.runs (layer 3)"
    ]
    audio.write_text(audio.read_text() + "\n\ndef f():\n    from utils.corpus import splits\n")
    lines = audio.read_text().splitlines()
    assert graph(tmp_path)[1] == [f"audio.py:{len(lines)} utils.corpus"]


@pytest.mark.parametrize(
    ("script", "old_name", "stage"),
    [
        ("train_decoder", "Resynthesis", DecoderStage),
        ("train_quantizer", "Quantization", QuantizerStage),
        ("train_posemb", "PosembDistillation", PosembStage),
        ("train_encoder", "EncoderDistillation", EncoderStage),
        ("train_joint", "Refinement", JointStage),
    ],
)
def test_the_brains_keep_their_old_names(script, old_name, stage):
    """Code that imports a stage's Brain from its script by the old name still gets the stage's class."""
    assert getattr(importlib.import_module(script), old_name) is stage
