"""The benchmark's report: one Markdown table per section (see benchmarks/benchmark.py)."""

from focalcodec.files import format_bytes

__all__ = ["markdown"]


def _memory_label(report: dict) -> str:
    return "peak GPU memory" if report["environment"]["device"].startswith("cuda") else "peak RSS"


def training_table(report: dict) -> list[str]:
    stages = [stage for stage in ("quantizer", "decoder") if stage in report]
    if not stages:
        return []
    lines = [
        "| training step | uncached | cached | speed-up | encoder share (uncached) "
        f"| audio s / wall s: uncached → cached | cache build | {_memory_label(report)} |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for stage in stages:
        figures = report[stage]
        build = figures["cache_build"]
        label = f"{stage} ({figures['batch_size']} × {figures['utterance_seconds']:g} s"
        label += ", 22-frame crops)" if stage == "decoder" else ")"
        lines.append(
            f"| {label} | {figures['uncached']['step_seconds']:.2f} s "
            f"| {figures['cached']['step_seconds']:.2f} s | **{figures['speedup']:.2f}×** "
            f"| {100 * figures['encoder_share']:.0f} % "
            f"| {figures['uncached']['audio_seconds_per_second']:.1f} → "
            f"{figures['cached']['audio_seconds_per_second']:.1f} "
            f"| {build['audio_seconds'] / build['seconds']:.1f}× real time ({build['dtype']}, "
            f"{format_bytes(build['bytes'] / build['audio_seconds'])} per s of audio) "
            f"| {format_bytes(figures['peak_memory_bytes'])} |"
        )
    return [*lines, ""]


def codec_table(report: dict) -> list[str]:
    if "codec" not in report:
        return []
    codec = report["codec"]
    lines = [
        f"| codec, {codec['input_seconds']:g} s of audio, batch 1 ({codec['num_parameters'] / 1e6:.3g} M "
        f"parameters) | time | × real time | {_memory_label(report)} |",
        "|---|---|---|---|",
    ]
    for name in ("encode", "decode", "resynthesis"):
        op = codec[name]
        memory = format_bytes(op["peak_memory_bytes"])
        lines.append(f"| {name} | {op['seconds']:.3f} s | **{op['realtime_factor']:.1f}×** | {memory} |")
    return [*lines, ""]


def loading_table(report: dict) -> list[str]:
    if "loading" not in report:
        return []
    figures = report["loading"]
    whole, crops = figures["whole"], figures["crops"]
    label = f"{figures['utterances']} × {figures['utterance_seconds']:g} s, batch {figures['batch_size']}"
    return [
        f"| decoder stage, feature cache ({label}) | whole-utterance reads | crop-only reads | ratio |",
        "|---|---|---|---|",
        f"| data loading, items/s | {whole['items_per_second']:.1f} | {crops['items_per_second']:.1f} "
        f"| **{figures['loading_speedup']:.1f}×** |",
        f"| training step | {whole['step_seconds']:.3f} s | {crops['step_seconds']:.3f} s "
        f"| **{figures['step_speedup']:.2f}×** |",
        "",
    ]


def compile_table(report: dict) -> list[str]:
    if "compile" not in report:
        return []
    lines = [
        "| cached training step | eager | compiled (inductor) | speed-up | first compiled step |",
        "|---|---|---|---|---|",
    ]
    for stage, figures in report["compile"].items():
        lines.append(
            f"| {stage} ({figures['batch_size']} × {figures['utterance_seconds']:g} s) "
            f"| {figures['eager']['step_seconds']:.3f} s | {figures['compiled']['step_seconds']:.3f} s "
            f"| **{figures['speedup']:.2f}×** | {figures['compiled']['first_step_seconds']:.1f} s |"
        )
    return [*lines, ""]


def tokenization_table(report: dict) -> list[str]:
    if "tokenization" not in report:
        return []
    figures = report["tokenization"]
    lines = [
        f"| corpus tokenization, `encode` of {figures['files']} files "
        f"({figures['audio_seconds'] / 60:.1f} min of audio) "
        "| wall time | files/s | audio-hours/hour | vs batch 1 | tokens equal to batch 1 |",
        "|---|---|---|---|---|---|",
    ]
    single = figures["runs"]["batch_1"]["files_per_second"]
    for name, run in figures["runs"].items():
        lines.append(
            f"| {name.replace('_', ' ')} | {run['seconds']:.1f} s | {run['files_per_second']:.2f} "
            f"| {run['audio_hours_per_hour']:.0f} | **{run['files_per_second'] / single:.2f}×** "
            f"| {100 * run['same_tokens_as_batch_1']:.2f} % |"
        )
    return [*lines, ""]


def streaming_table(report: dict) -> list[str]:
    if "streaming" not in report:
        return []
    figures = report["streaming"]
    chunk = figures["chunk_ms"]
    weights = "random weights" if figures["weights"] == "random" else figures["weights"]
    lines = [
        f"| streaming, {chunk:g} ms chunks of {figures['audio_seconds']:.0f} s of real speech "
        f"({figures['num_parameters'] / 1e6:.3g} M parameters, {weights}), encode + decode | p50 | p95 | max "
        "| real-time factor | tokens equal to eager |",
        "|---|---|---|---|---|---|",
    ]
    for name, run in figures["runtimes"].items():
        p95 = f"**{run['p95_ms']:.1f} ms**" if run["p95_ms"] < chunk else f"{run['p95_ms']:.1f} ms"
        lines.append(
            f"| {name} | {run['p50_ms']:.1f} ms | {p95} | {run['max_ms']:.1f} ms "
            f"| {run['real_time_factor']:.2f} | {100 * run['tokens_equal_to_eager']:.1f} % |"
        )
    lines.append("")
    for name, run in figures["runtimes"].items():
        if "quality" in run:
            quality = run["quality"]
            lines += [
                f"| {name} against float32 (eager), same speech | tokens equal | log-mel L1 | DNSMOS OVRL "
                "(float32 → int8) |",
                "|---|---|---|---|",
                f"| {name} | {100 * quality['tokens_equal']:.1f} % | {quality['mel_distance']:.3f} "
                f"| {quality['float_dnsmos_ovrl']:.2f} → {quality['dnsmos_ovrl']:.2f} |",
                "",
            ]
    return lines + onnx_options_table(figures) + sessions_table(figures)


def onnx_options_table(figures: dict) -> list[str]:
    if "onnx_options" not in figures:
        return []
    lines = ["| ONNX Runtime session options, int8 stream model | p50 per chunk | speed vs default |"]
    lines.append("|---|---|---|")
    for name, run in figures["onnx_options"].items():
        lines.append(f"| {name} | {run['p50_ms']:.1f} ms | **{run['vs_default']:.2f}×** |")
    return [*lines, ""]


def sessions_table(figures: dict) -> list[str]:
    chunk = figures["chunk_ms"]
    lines = [
        f"| streams at once, one batched step per {chunk:g} ms | sessions | step p50 | step p95 | step max "
        "| audio s / wall s | real time (p95 < chunk) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, server in figures["sessions"].items():
        for count, run in server["by_sessions"].items():
            lines.append(
                f"| {name} | {count} | {run['p50_ms']:.1f} ms | {run['p95_ms']:.1f} ms "
                f"| {run['max_ms']:.1f} ms | {run['audio_seconds_per_second']:.2f} "
                f"| {'**yes**' if run['real_time'] else 'no'} |"
            )
    best = ", ".join(
        f"{name} {server['max_real_time_sessions']}" for name, server in figures["sessions"].items()
    )
    return [*lines, "", f"Largest number of sessions (of 1, 8, 32) in real time: {best}.", ""]


def scale_table(report: dict) -> list[str]:
    if "scale" not in report:
        return []
    figures = report["scale"]
    one, two = figures["processes"]["1"], figures["processes"]["2"]
    manifest, shards = figures["manifest"], figures["shards"]
    return [
        f"| training at scale ({figures['files']} files of {figures['file_seconds']:g} s, batch "
        f"{figures['batch_size']}) | baseline | scaled | ratio |",
        "|---|---|---|---|",
        f"| train loader, utterances/s: manifest → shards | {manifest['utterances_per_second']:.1f} "
        f"| {shards['utterances_per_second']:.1f} | **{figures['loading_speedup']:.2f}×** |",
        "| quantizer training from shards, utterances/s: 1 → 2 processes "
        f"({figures['threads_per_process']} thread(s) each) "
        f"| {one['utterances_per_second']:.2f} | {two['utterances_per_second']:.2f} "
        f"| **{figures['processes_speedup']:.2f}×** |",
        "",
    ]


def markdown(report: dict) -> str:
    """Every section's table, under a line naming the device."""
    env = report["environment"]
    lines = [
        f"Device `{env['device']}` ({env['processor']}), {env['threads']} threads, torch {env['torch']}"
        + (" — QUICK (tiny models, not representative)" if env["quick"] else ""),
        "",
    ]
    tables = (
        training_table, codec_table, loading_table, compile_table, tokenization_table, streaming_table,
        scale_table,
    )  # fmt: skip
    for table in tables:
        lines += table(report)
    return "\n".join(lines)
