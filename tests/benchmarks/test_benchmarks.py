"""The prepared GPU check and the benchmark it runs, in their quick form on the CPU (tiny models)."""

import json
import subprocess
import sys

import pytest
from helpers.recipe_runner import ROOT, recipe_env


@pytest.mark.slow
def test_gpu_check_quick_on_the_cpu(tmp_path):
    """Every check of the GPU check passes with tiny models on the CPU (in fp32 only: fp16 is CUDA-only), its
    table reports the step times, and the benchmark it runs reports every section."""
    command = [sys.executable, "-m", "benchmarks.gpu_check", "--device", "cpu", "--quick"]
    env = {**recipe_env(), "OMP_NUM_THREADS": "2"}  # a hang guard: ~15 min on 2 busy cores (8 sections)
    result = subprocess.run(
        [*command, "--work", str(tmp_path)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = [line for line in result.stdout.splitlines() if line.startswith("| ") and "check" not in line]
    checks = [row.split("|")[1].strip() for row in rows]
    stages = [
        f"{stage}-{precision}{cache}"
        for stage in ("quantizer", "decoder")
        for precision in ("fp32",)  # bf16 on the CPU: tests/scripts/test_train_quantizer.py
        for cache in ("", "-cache")
    ]
    assert checks == [*stages, "export", "cli-resynth", "benchmark"]
    assert all("| pass |" in row for row in rows)
    assert all(row.split("|")[3].strip().endswith(" s") for row in rows[: len(stages)])  # a median step time
    assert len(list((tmp_path / "resynth").rglob("*.wav"))) == 2  # the 2 test utterances

    report = json.loads((tmp_path / "bench.json").read_text())
    for stage in ("quantizer", "decoder"):
        assert report[stage]["uncached"]["step_seconds"] > 0 and report[stage]["cached"]["step_seconds"] > 0
        assert report[stage]["speedup"] > 0 and 0 < report[stage]["encoder_share"] < 1
    for op in ("encode", "decode", "resynthesis"):
        assert report["codec"][op]["realtime_factor"] > 0
    streaming = report["streaming"]["runtimes"]
    assert set(streaming) == {"eager", "torchscript", "onnxruntime", "onnxruntime-int8"}
    assert all(0 < run["p50_ms"] <= run["p95_ms"] for run in streaming.values())
    assert all(streaming[name]["tokens_equal_to_eager"] == 1.0 for name in ("torchscript", "onnxruntime"))
    quality = streaming["onnxruntime-int8"]["quality"]
    assert 0.5 < quality["tokens_equal"] <= 1 and quality["mel_distance"] > 0 and quality["dnsmos_ovrl"] > 0
    sessions = report["streaming"]["sessions"]
    assert set(sessions) == {"onnxruntime", "onnxruntime-int8"}
    assert all(set(server["by_sessions"]) == {"1", "8", "32"} for server in sessions.values())
    scale = report["scale"]  # shards against the manifest, 2 processes against 1: measured, both ways
    assert scale["manifest"]["utterances_per_second"] > 0 and scale["shards"]["utterances_per_second"] > 0
    assert scale["processes"]["2"]["processes"] == 2 and scale["processes_speedup"] > 0
    tokenization = report["tokenization"]["runs"]
    assert set(tokenization) == {"batch_1", "batch_3"}  # no bfloat16 run off CUDA
    assert all(
        run["files_per_second"] > 0 and run["same_tokens_as_batch_1"] == 1.0 for run in tokenization.values()
    )


def test_gpu_check_needs_cuda_unless_told_otherwise():
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_check", "--device", "cuda"],
        cwd=ROOT, env=recipe_env(), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2 and "no CUDA device" in result.stderr
