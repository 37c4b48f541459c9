"""`dimgestor bench report`: docs/benchmarks.md and its PNG plots, generated from benchmark JSON files only.

Every figure in the document is read from the JSON given (nothing is measured here, nothing is typed in by hand),
so regenerating after a run keeps the document and the JSON in step; ``--check`` tells whether the markdown on disk
is what the JSON gives. The summary is a template filled from the figures: which side wins where, by how much, and
the measured reasons (FLOPs, growth with length) that explain it.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

from ..errors import UserError

GPU_SCRIPT = "scripts/bench_gpu.sh WHEELS_DIR"
CPU_COMMANDS = (
    "dimgestor bench denoiser --out bench/denoiser_cpu.json",
    "dimgestor bench per-hop --out bench/per_hop_cpu.json",
    "dimgestor bench speech --out bench/speech_cpu.json",
    "dimgestor bench streams --out bench/streams_cpu.json",
    "dimgestor bench streaming --minutes 5 --out bench/streaming_cpu.json",
)
ORDER = ("denoiser", "per_hop", "speech", "streams", "streaming")
BACKBONE_LABEL = {"mamba2": "Mamba-2", "transformer": "transformer"}


# ---------------------------------------------------------------------------------------------------------------
# Number formats: the test of this module uses the same functions to find the JSON's figures in the document.


def fmt_ms(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


fmt_mb = fmt_ms


def fmt_ratio(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.2f}"


def fmt_count(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 1e6:
        return f"{value / 1e6:.2f} M"
    if value >= 1e3:
        return f"{value / 1e3:.1f} k"
    return f"{value:.0f}"


def fmt_mflop(value: float | None) -> str:
    return "-" if value is None else f"{value / 1e6:.2f}"


def fmt_gflop(value: float | None) -> str:
    return "-" if value is None else fmt_ms(value / 1e9)


def verdict(ratio: float) -> str:
    """A Mamba-2 / transformer time ratio in words."""
    if ratio < 1:
        return f"Mamba-2 is {1 / ratio:.1f}x faster"
    return f"Mamba-2 is {ratio:.1f}x slower"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


# ---------------------------------------------------------------------------------------------------------------
# Loading


def load_reports(paths: list[Path]) -> tuple[list[tuple[Path, dict]], list[str]]:
    """(path, report) of every usable JSON, in a stable order (kind, then CPU before CUDA, then name); and notes
    on the files skipped."""
    reports, skipped = [], []
    for path in paths:
        path = Path(path)
        try:
            report = json.loads(path.read_text())
        except FileNotFoundError:
            raise UserError(f"benchmark JSON not found: {path}") from None
        except json.JSONDecodeError as error:
            raise UserError(f"{path} is not valid JSON: {error}") from None
        kind = report.get("benchmark") if isinstance(report, dict) else None
        if kind not in ORDER:
            skipped.append(f"{_display(path)}: not a benchmark report")
            continue
        if kind == "denoiser" and report.get("schema", 1) < 2:
            skipped.append(f"{_display(path)}: older denoiser format (no ratios or crossover); regenerate it with "
                           "`dimgestor bench denoiser`")
            continue
        reports.append((path, report))
    reports.sort(key=lambda item: (ORDER.index(item[1]["benchmark"]), _device(item[1]) != "cpu", str(item[0])))
    return reports, skipped


def _device(report: dict) -> str:
    device = report.get("machine", {}).get("device", "cpu")
    return "cuda" if str(device).startswith("cuda") else "cpu"


def _display(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


def _device_label(report: dict) -> str:
    machine = report.get("machine", {})
    if _device(report) == "cuda":
        return f"GPU ({machine.get('gpu', 'CUDA')})"
    threads = machine.get("threads", "?")
    return (f"CPU ({machine.get('processor') or machine.get('platform', '?')}, {threads} "
            f"thread{'' if threads == 1 else 's'})")


# ---------------------------------------------------------------------------------------------------------------
# Plots


def _pyplot():
    from ..evaluation.plots import _pyplot as pyplot  # the project's Agg setup

    return pyplot()


def _plain_log_axes(ax, xs: list[float], y_log: bool = True) -> None:
    """Log axes labelled with plain numbers, x ticks at the measured points."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    if y_log:
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
    ticks = sorted(set(xs))
    if ticks:
        ax.set_xticks(ticks)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def plot_denoiser(report: dict, folder: Path, stem: str) -> list[Path]:
    plt = _pyplot()
    rows = report["results"]
    batches = sorted({r["batch"] for r in rows})
    configs = list(dict.fromkeys(r["config"] for r in rows))
    paths = []
    from .denoiser import MEMORY_RESOLUTION_MB

    for metric, label, name, floor in (
        ("ms_per_motion_second_per_step", "ms per second of motion, one denoiser step", "time", 0.0),
        ("peak_step_memory_mb", f"working memory of one step, MB (>= {MEMORY_RESOLUTION_MB:g})", "memory",
         MEMORY_RESOLUTION_MB),
    ):
        figure, axes = plt.subplots(1, len(batches), figsize=(5.2 * len(batches), 4.0), squeeze=False)
        for ax, batch in zip(axes[0], batches):
            for config in configs:
                points = sorted((r["frames"], r[metric]) for r in rows
                                if r["config"] == config and r["batch"] == batch and r.get(metric) is not None)
                points = [(x, y) for x, y in points if y > 0 and y >= floor]
                if not points:
                    continue
                backbone = report["configs"][config]["backbone"]
                ax.plot([p[0] for p in points], [p[1] for p in points], marker="o",
                        linestyle="-" if backbone == "mamba2" else "--", label=config)
            _plain_log_axes(ax, [r["frames"] for r in rows])
            ax.set_xlabel("sequence length, frames (30 fps)")
            ax.set_ylabel(label)
            ax.set_title(f"batch {batch}")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7)
        figure.suptitle(f"Denoiser, {_device_label(report)}", fontsize=9)
        figure.tight_layout()
        path = folder / f"{stem}_{name}.png"
        figure.savefig(path, dpi=90)
        plt.close(figure)
        paths.append(path)
    return paths


def plot_per_hop(report: dict, folder: Path, stem: str) -> list[Path]:
    plt = _pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(10.5, 4.0))
    for pair in dict.fromkeys(r["pair"] for r in report["results"]):
        rows = sorted((r for r in report["results"] if r["pair"] == pair), key=lambda r: r["context_seconds"])
        x = [r["context_seconds"] for r in rows]
        left.plot(x, [r["mamba2_ms"] for r in rows], marker="o", label=f"{pair}: Mamba-2, carried state")
        left.plot(x, [r["transformer_kv_cache_ms"] for r in rows], marker="s", linestyle="--",
                  label=f"{pair}: transformer, KV cache")
        recompute = [(r["context_seconds"], r["transformer_recompute_ms"]) for r in rows
                     if r.get("transformer_recompute_ms") is not None]
        if recompute:
            left.plot(*zip(*recompute), marker="^", linestyle=":", label=f"{pair}: transformer, recompute")
        right.plot(x, [r["per_hop_ratio"] for r in rows], marker="o", label=pair)
    hop_ms = report["results"][0]["hop_ms"] if report["results"] else 500
    left.axhline(hop_ms, color="grey", linewidth=0.8)
    left.text(left.get_xlim()[0], hop_ms, " hop duration", va="top", fontsize=7, color="grey")
    right.axhline(1.0, color="grey", linewidth=0.8)
    goal = report.get("goal", {}).get("per_hop_ratio_at_60s_at_most")
    if goal:
        right.axhline(goal, color="green", linewidth=0.8, linestyle=":")
        right.text(right.get_xlim()[0], goal, f" goal {goal:g} at 60 s", va="bottom", fontsize=7, color="green")
    contexts = [r["context_seconds"] for r in report["results"]]
    _plain_log_axes(left, contexts)
    _plain_log_axes(right, contexts, y_log=False)
    for ax in (left, right):
        ax.set_xlabel("context, seconds of motion")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    left.set_ylabel("ms per hop (0.5 s of motion, 8 steps)")
    right.set_ylabel("per-hop ratio, Mamba-2 / transformer")
    figure.suptitle(f"Streaming per hop, {_device_label(report)}", fontsize=9)
    figure.tight_layout()
    path = folder / f"{stem}.png"
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return [path]


# ---------------------------------------------------------------------------------------------------------------
# Sections


def _ratio_index(report: dict) -> dict:
    return {(e["pairing"], e["batch"], e["frames"]): e for e in report.get("ratios", [])}


def _row_index(report: dict) -> dict:
    return {(r["config"], r["batch"], r["frames"]): r for r in report["results"]}


def section_denoiser(path: Path, report: dict, figures: list[Path], doc_dir: Path) -> list[str]:
    dtype = report.get("settings", {}).get("dtype", "float32")
    lines = [f"### Denoiser, {_device_label(report)}{'' if dtype == 'float32' else ', ' + dtype}", "",
             f"From `{_display(path)}`; ratios are Mamba-2 / "
             "transformer (below 1: Mamba-2 is faster or smaller).", ""]
    settings = report.get("settings", {})
    lines += [f"Sampling steps per generation: {settings.get('sampling_steps', '?')}; dtype "
              f"{settings.get('dtype', 'float32')}; timing: warm-up {settings.get('warmup')}, median of "
              f"{settings.get('repeats')} (paper-sized: {settings.get('paper_repeats')}).", ""]
    lines += _table(
        ["configuration", "backbone", "width x depth", "heads", "bidirectional", "denoiser parameters", "weights MB"],
        [[name, BACKBONE_LABEL[c["backbone"]], f"{c['d_model']} x {c['n_blocks']}",
          str(c["n_heads"]) if c["backbone"] == "transformer" else "-", "yes" if c["bidirectional"] else "no",
          fmt_count(c["parameters_denoiser"]), fmt_mb(c["denoiser_weights_mb"])]
         for name, c in report["configs"].items()])
    lines += ["", "Pairings:", ""]
    lines += [f"- `{p['name']}`: `{p['mamba2']}` vs `{p['transformer']}`: {p['why']}." for p in report["pairings"]]
    rows, ratios = _row_index(report), _ratio_index(report)
    for pairing in report["pairings"]:
        for batch in sorted({e["batch"] for e in report.get("ratios", []) if e["pairing"] == pairing["name"]}):
            entries = sorted((e for e in report["ratios"] if e["pairing"] == pairing["name"] and e["batch"] == batch),
                             key=lambda e: e["frames"])
            lines += ["", f"#### `{pairing['name']}`, batch {batch}", ""]
            table = []
            for e in entries:
                m = rows[(pairing["mamba2"], batch, e["frames"])]
                t = rows[(pairing["transformer"], batch, e["frames"])]
                table.append([
                    f"{e['frames']} ({e['seconds']:g} s)",
                    fmt_ms(m["ms_per_step"]), fmt_ms(t["ms_per_step"]), fmt_ratio(e["time_ratio"]),
                    fmt_ms(m["ms_per_motion_second_sampling"]), fmt_ms(t["ms_per_motion_second_sampling"]),
                    fmt_ratio(e["sampling_ratio"]),
                    fmt_mb(m.get("peak_step_memory_mb")), fmt_mb(t.get("peak_step_memory_mb")),
                    fmt_ratio(e.get("memory_ratio")), fmt_ratio(e.get("model_memory_ratio")),
                    fmt_mflop(m.get("flops_per_frame_per_step")), fmt_mflop(t.get("flops_per_frame_per_step")),
                ])
            sampled = "" if all(rows[(pairing["mamba2"], batch, e["frames"])]["sampling_measured"]
                                for e in entries) else " (steps x step time)"
            lines += _table(
                ["frames", "Mamba-2 ms/step", "transformer ms/step", "time ratio",
                 f"Mamba-2 ms per s of motion, sampling{sampled}", f"transformer ms per s of motion{sampled}",
                 "sampling ratio", "Mamba-2 step memory MB", "transformer step memory MB", "memory ratio",
                 "weights + step memory ratio", "Mamba-2 MFLOP/frame/step", "transformer MFLOP/frame/step"],
                table)
            found = report.get("crossover", {}).get(pairing["name"], {}).get(str(batch))
            if found:
                lines += ["", f"Crossover: {found['statement']}."]
    for figure in figures:
        lines += ["", f"![{figure.stem}]({os.path.relpath(figure, doc_dir)})"]
    return lines


def section_per_hop(path: Path, report: dict, figures: list[Path], doc_dir: Path) -> list[str]:
    s = report.get("settings", {})
    lines = [f"### Streaming per hop, {_device_label(report)}", "", f"From `{_display(path)}`. One hop: "
             f"{s.get('hop_frames')} new frames ({s.get('hop_frames', 0) / 30:g} s) sampled with "
             f"{s.get('lookahead_frames')} lookahead frames in {s.get('steps')} steps, then committed; batch "
             f"{s.get('batch')}. Mamba-2 carries its state (mode: chunked `scan` or frame-by-frame `step`, the faster "
             "shown); the transformer attends to a KV cache of the context (`kv_cache`) or recomputes it (`recompute`, "
             "shown where measured); per-hop ratio = Mamba-2 / transformer (the faster of its modes).", ""]
    for pair in dict.fromkeys(r["pair"] for r in report["results"]):
        rows = sorted((r for r in report["results"] if r["pair"] == pair), key=lambda r: r["context_seconds"])
        lines += [f"#### `{pair}` (causal: forward-only Mamba-2, causally masked transformer)", ""]
        lines += _table(
            ["context s (frames)", "Mamba-2 ms/hop", "Mamba-2 mode", "Mamba-2 scan / step ms", "transformer ms/hop",
             "transformer mode",
             "transformer KV cache ms", "transformer recompute ms", "per-hop ratio", "Mamba-2 state KB",
             "transformer KV cache MB", "Mamba-2 GFLOP/hop", "transformer GFLOP/hop"],
            [[f"{r['context_seconds']:g} ({r['context_frames']})", fmt_ms(r["mamba2_ms"]), r["mamba2_mode"],
              f"{fmt_ms(r['mamba2_scan_ms'])} / {fmt_ms(r.get('mamba2_step_ms'))}", fmt_ms(r["transformer_ms"]), r["transformer_mode"], fmt_ms(r["transformer_kv_cache_ms"]),
              fmt_ms(r.get("transformer_recompute_ms")), fmt_ratio(r["per_hop_ratio"]),
              fmt_ms(r["mamba2_state_mb"] * 1024), fmt_mb(r["transformer_kv_cache_mb"]),
              fmt_gflop(r.get("mamba2_flops_per_hop")), fmt_gflop(r.get("transformer_flops_per_hop"))]
             for r in rows])
        w = report.get("windowed", {}).get(pair)
        if w:
            lines += ["", f"Today's streaming for reference (the bidirectional denoisers of this size re-sample a "
                      f"{w['window_frames']}-frame window, {w['known_frames']} frames known, every hop; its context "
                      f"cannot grow): Mamba-2 {fmt_ms(w['mamba2_ms'])} ms, transformer {fmt_ms(w['transformer_ms'])} "
                      f"ms per hop, ratio {fmt_ratio(w['ratio'])}.", ""]
    goal = report.get("goal", {})
    if goal.get("per_hop_ratio_at_60s") is not None:
        lines += [f"Goal: per-hop ratio at most {goal['per_hop_ratio_at_60s_at_most']:g} at 60 s of context: measured "
                  f"{fmt_ratio(goal['per_hop_ratio_at_60s'])}, {'met' if goal['met'] else 'not met'}.", ""]
    for figure in figures:
        lines += [f"![{figure.stem}]({os.path.relpath(figure, doc_dir)})", ""]
    return lines[:-1] if lines[-1] == "" else lines


def section_speech(path: Path, report: dict) -> list[str]:
    hubert = report.get("hubert", {})
    chunks = list(next(iter(report["encoders"].values()))["streaming"]) if report["encoders"] else []
    lines = [f"### Speech encoder, {_device_label(report)}", "", f"From `{_display(path)}`. HuBERT: {hubert.get('size')}"
             f" ({hubert.get('layers')} layers, {hubert.get('hidden_size')} wide, {fmt_count(hubert.get('parameters'))}"
             f" parameters, random weights); ONNX Runtime providers: {', '.join(hubert.get('onnxruntime_providers') or ['-'])}."
             f" Audio: {report.get('audio')}. Streaming re-encodes the encoder's trailing context "
             f"({report['settings'].get('context_seconds'):g} s) for every chunk (HuBERT is not causal); the "
             "built-in front end is causal and streams exactly.", ""]
    lines += _table(
        ["encoder", "offline ms per s of audio"] + [f"streaming, {c} s chunks, ms per s" for c in chunks]
        + [f"share of streaming compute ({chunks[0] if chunks else '?'} s chunks)"],
        [[name, fmt_ms(e["offline_ms_per_audio_second"])]
         + [fmt_ms(e["streaming"][c]["ms_per_audio_second"]) for c in chunks]
         + [f"{100 * e['share_of_streaming_compute']:.0f} %"] for name, e in report["encoders"].items()])
    model = report.get("model", {})
    lines += ["", f"The model's own streaming work for the share: {fmt_ms(model.get('ms_per_audio_second'))} ms per "
              f"second of audio ({model.get('what')})."]
    for name, why in report.get("not_measured", {}).items():
        lines += ["", f"Not measured: {name} ({why})."]
    return lines


def section_streams(path: Path, report: dict) -> list[str]:
    lines = [f"### Real-time streams, {_device_label(report)}", "", f"From `{_display(path)}`: the largest number of "
             "streams, batched, whose slowest hop stays within the hop's duration (see the JSON's method).", ""]
    table = []
    for name, result in report["results"].items():
        for mode, found in result["modes"].items():
            at = found.get("at_streams") or {}
            note = found.get("error") or ("limited by --max-batch" if found.get("limited_by_max_batch") else "")
            table.append([name, mode, "-" if found.get("streams") is None else str(found["streams"]),
                          fmt_ms(at.get("ms_median")), fmt_ms(at.get("ms_max")),
                          fmt_ms(result["hop_seconds"] * 1000), note.replace("|", "/")])
    lines += _table(["model", "mode", "streams", "hop ms (median)", "hop ms (slowest)", "hop duration ms", "note"],
                    table)
    return lines


def section_streaming(path: Path, report: dict) -> list[str]:
    lines = [f"### Streaming generator, {_device_label(report)}", "", f"From `{_display(path)}`: "
             f"{report.get('audio_minutes')} minutes of speech through `StreamingGestureGenerator` per configuration, "
             f"weights `{Path(str(report.get('weights', '?'))).name}`. Latency is beyond the hop: "
             f"{report.get('latency_definition', '').strip()}", ""]
    table = []
    for name, r in report["configurations"].items():
        rss = r.get("rss_mb", {})
        drift = r.get("timestamp", {}).get("drift_frames")
        table.append([name, f"{r['rtf']:.3f}", fmt_ms(r["latency_ms"]["p50"]), fmt_ms(r["latency_ms"]["p95"]),
                      fmt_ms(r["latency_ms"]["max"]),
                      "-" if rss.get("drift_percent") is None else f"{rss['drift_percent']:+.2f}",
                      "-" if drift is None else f"{drift:.2f}"])
    lines += _table(["configuration", "real-time factor", "latency p50 ms", "p95 ms", "max ms", "memory drift %",
                     "timestamp drift frames"], table)
    return lines


# ---------------------------------------------------------------------------------------------------------------
# Summary: a template filled from the figures


def _at(entries: list[dict], frames: int) -> dict | None:
    return next((e for e in entries if e["frames"] == frames), None)


def summary_denoiser(report: dict) -> list[str]:
    ratios = report.get("ratios", [])
    rows = _row_index(report)
    pairings = {p["name"]: p for p in report["pairings"]}
    shipped = sorted((e for e in ratios if e["pairing"] == "shipped" and e["batch"] == 1), key=lambda e: e["frames"])
    if not shipped:
        return []
    matched = {e["frames"]: e for e in ratios if e["pairing"] == "shipped_equal_params" and e["batch"] == 1}
    first = shipped[0]
    long = _at(shipped, 1800) or shipped[-1]
    p = pairings["shipped"]
    m0, t0 = rows[(p["mamba2"], 1, first["frames"])], rows[(p["transformer"], 1, first["frames"])]
    ml, tl = rows[(p["mamba2"], 1, long["frames"])], rows[(p["transformer"], 1, long["frames"])]
    dtype = report.get("settings", {}).get("dtype", "float32")
    text = [f"Whole-sequence denoising (batch 1{'' if dtype == 'float32' else ', ' + dtype}): at a streaming window ({first['frames']} frames, {first['seconds']:g} s) "
            f"one Mamba-2 step takes {fmt_ratio(first['time_ratio'])}x the transformer's time at equal width and depth "
            f"({verdict(first['time_ratio'])})"]
    if first["frames"] in matched:
        text[-1] += (f" and {fmt_ratio(matched[first['frames']]['time_ratio'])}x that of the transformer widened to equal "
                     "parameters")
    text[-1] += "."
    if long is not first:
        sentence = (f"At {long['frames']} frames ({long['seconds']:g} s of motion) the ratio is "
                    f"{fmt_ratio(long['time_ratio'])} ({verdict(long['time_ratio'])})")
        if long["frames"] in matched:
            sentence += f", {fmt_ratio(matched[long['frames']]['time_ratio'])} against equal parameters"
        text.append(sentence + ".")
    crossover = report.get("crossover", {}).get("shipped", {}).get("1")
    if crossover:
        text.append(f"Crossover (equal shape): {crossover['statement']}.")
    for name, label in (("shipped_equal_params", "equal parameters"), ("paper", "paper-sized, 12 x 1024")):
        found = report.get("crossover", {}).get(name, {}).get("1")
        if found:
            text.append(f"Crossover ({label}): {found['statement']}.")
    paper = sorted((e for e in ratios if e["pairing"] == "paper" and e["batch"] == 1), key=lambda e: e["frames"])
    if paper:
        pl = _at(paper, 1800) or paper[-1]
        text.append(f"Paper-sized at {pl['frames']} frames: time ratio {fmt_ratio(pl['time_ratio'])}, working memory ratio "
                    f"{fmt_ratio(pl.get('memory_ratio'))}, weights + working memory ratio "
                    f"{fmt_ratio(pl.get('model_memory_ratio'))}.")
    if long.get("memory_ratio") is not None:
        text.append(f"Working memory of a step at {long['frames']} frames: Mamba-2 {fmt_mb(ml.get('peak_step_memory_mb'))} "
                    f"MB, transformer {fmt_mb(tl.get('peak_step_memory_mb'))} MB (ratio {fmt_ratio(long['memory_ratio'])}"
                    f"; with the weights {fmt_ratio(long.get('model_memory_ratio'))}).")
    # why, from the measured FLOPs
    why = (f"Why: Mamba-2 does {fmt_ratio(first['flops_ratio'])}x the transformer's counted FLOPs per frame at "
           f"{first['frames']} frames (two Mamba-2 layers per block, one per direction, each expanding to twice the "
           f"width) and {fmt_ratio(long['flops_ratio'])}x at {long['frames']}, because attention's FLOPs per frame grow "
           f"with the length (transformer {fmt_mflop(t0['flops_per_frame_per_step'])} -> "
           f"{fmt_mflop(tl['flops_per_frame_per_step'])} MFLOP per frame) while Mamba-2's stay flat "
           f"({fmt_mflop(m0['flops_per_frame_per_step'])} -> {fmt_mflop(ml['flops_per_frame_per_step'])}).")
    if first["time_ratio"] > 1.2 * first["flops_ratio"]:
        why += (f" At short lengths Mamba-2 is slower than its FLOPs explain ({fmt_ratio(first['time_ratio'])}x the time "
                f"for {fmt_ratio(first['flops_ratio'])}x the FLOPs): ")
        if _device(report) == "cuda":
            kernels = report.get("machine", {}).get("mamba_ssm_kernels")
            why += ("each Mamba-2 layer launches more kernels (conv, scan, gated norm, two directions) for little work "
                    "each, so launch overhead rather than arithmetic bounds it"
                    + ("" if kernels else "; and without mamba-ssm its scan runs as many small PyTorch operations")
                    + ".")
        else:
            why += ("its scan is many small tensor operations, so per-operation overhead rather than arithmetic "
                    "bounds it, where the transformer runs a few large matrix products and one fused attention kernel.")
    text.append(why)
    if _device(report) == "cuda":
        for name in ("shipped", "paper"):
            entries = [e for e in ratios if e["pairing"] == name and e["batch"] == 1]
            at = _at(entries, 1800)
            if at:
                peak = at.get("peak_memory_ratio")
                text.append(
                    f"Goals at 60 s sequences ({name}): time at most 0.25x the transformer's, measured "
                    f"{fmt_ratio(at['time_ratio'])} ({'met' if at['time_ratio'] <= 0.25 else 'not met'}); peak memory at "
                    f"most 1/3, measured {fmt_ratio(peak)}"
                    + ("" if peak is None else f" ({'met' if peak <= 1 / 3 else 'not met'})") + ".")
    return [" ".join(text)]


def summary_per_hop(report: dict) -> list[str]:
    rows = sorted((r for r in report["results"] if r["pair"] == "shipped"), key=lambda r: r["context_seconds"])
    if not rows:
        return []
    first, last = rows[0], rows[-1]
    at60 = next((r for r in rows if r["context_seconds"] == 60), None)
    text = ["Streaming with carried state (shipped size, causal):"]
    if at60:
        text.append(f"at 60 s of context a hop costs Mamba-2 {fmt_ms(at60['mamba2_ms'])} ms against "
                    f"{fmt_ms(at60['transformer_ms'])} ms for the transformer ({at60['transformer_mode'].replace('_', ' ')}),"
                    f" a per-hop ratio of {fmt_ratio(at60['per_hop_ratio'])}")
        goal = report.get("goal", {})
        if goal.get("met") is not None:
            text[-1] += (f" (goal: at most {goal['per_hop_ratio_at_60s_at_most']:g}, "
                         f"{'met' if goal['met'] else 'not met'})")
        text[-1] += ";"
    if first is last:
        text.append(f"at {first['context_seconds']:g} s of context the per-hop ratio is {fmt_ratio(first['per_hop_ratio'])} "
                    f"(Mamba-2 {fmt_ms(first['mamba2_ms'])} ms, transformer {fmt_ms(first['transformer_ms'])} ms).")
    else:
        text.append(
            f"the ratio goes from {fmt_ratio(first['per_hop_ratio'])} at {first['context_seconds']:g} s to "
            f"{fmt_ratio(last['per_hop_ratio'])} at {last['context_seconds']:g} s of context. Mamba-2's hop costs about "
            f"the same whatever the context ({fmt_ms(first['mamba2_ms'])} -> {fmt_ms(last['mamba2_ms'])} ms; its state "
            f"is {fmt_ms(last['mamba2_state_mb'] * 1024)} KB), the transformer's grows with it "
            f"({fmt_ms(first['transformer_ms'])} -> {fmt_ms(last['transformer_ms'])} ms; KV cache "
            f"{fmt_mb(last['transformer_kv_cache_mb'])} MB at {last['context_seconds']:g} s).")
    if last.get("transformer_recompute_ms") is not None:
        text.append(f"Recomputing the context instead of caching it costs the transformer "
                    f"{fmt_ms(last['transformer_recompute_ms'])} ms per hop at {last['context_seconds']:g} s.")
    crossing = next((r for r in rows if r["per_hop_ratio"] < 1), None)
    if crossing:
        text.append(f"Mamba-2's hop is cheaper from {crossing['context_seconds']:g} s of context on (of those measured).")
    else:
        text.append(f"Mamba-2's hop is dearer at every measured context up to {last['context_seconds']:g} s.")
    paper = sorted((r for r in report["results"] if r["pair"] == "paper"), key=lambda r: r["context_seconds"])
    if paper:
        p = next((r for r in paper if r["context_seconds"] == 60), paper[-1])
        text.append(f"Paper-sized (12 x 1024), at {p['context_seconds']:g} s of context: Mamba-2 {fmt_ms(p['mamba2_ms'])} ms, "
                    f"transformer {fmt_ms(p['transformer_ms'])} ms per hop, ratio {fmt_ratio(p['per_hop_ratio'])}.")
    w = report.get("windowed", {}).get("shipped")
    if w:
        text.append(f"Today's windowed streaming (a {w['window_frames']}-frame window re-sampled per hop, bidirectional) "
                    f"costs Mamba-2 {fmt_ms(w['mamba2_ms'])} ms and the transformer {fmt_ms(w['transformer_ms'])} ms per "
                    f"hop (ratio {fmt_ratio(w['ratio'])}).")
    return [" ".join(text)]


def summary_speech(report: dict) -> list[str]:
    encoders = report["encoders"]
    if not encoders:
        return []
    chunk = min(next(iter(encoders.values()))["streaming"], key=float)
    parts = []
    for name, label in (("hubert_pytorch", "HuBERT in PyTorch"), ("hubert_onnxruntime", "HuBERT in ONNX Runtime"),
                        ("acoustic", "the built-in front end")):
        if name in encoders:
            e = encoders[name]
            streaming = e["streaming"][chunk]["ms_per_audio_second"]
            parts.append(f"{label} {fmt_ms(e['offline_ms_per_audio_second'])} ms offline and {fmt_ms(streaming)} ms "
                         f"streamed in {chunk} s chunks ({'faster' if streaming < 1000 else 'slower'} than real time; "
                         f"{100 * e['share_of_streaming_compute']:.0f} % of streaming compute)")
    size = report.get("hubert", {}).get("size")
    return [f"Speech encoder (HuBERT {size}), per second of audio: " + "; ".join(parts) + "."]


def summary_streams(report: dict) -> list[str]:
    parts = []
    for name, result in report["results"].items():
        for mode, found in result["modes"].items():
            if found.get("streams") is not None:
                parts.append(f"{found['streams']} for `{name}` ({mode})")
    if not parts:
        return []
    text = (f"Real-time streams one {'GPU' if _device(report) == 'cuda' else 'CPU'} sustains, batched: "
            + ", ".join(parts) + ".")
    default = report["results"].get("shipped_mamba2", {}).get("modes", {})
    best = max((found["streams"] for found in default.values() if found.get("streams") is not None), default=None)
    if _device(report) == "cuda" and best is not None:
        text += f" Goal: at least 32 streams of the default model on one H100-class GPU: {best}, " \
                f"{'met' if best >= 32 else 'not met'}."
    return [text]


SUMMARIES = {"denoiser": summary_denoiser, "per_hop": summary_per_hop, "speech": summary_speech,
             "streams": summary_streams}


# ---------------------------------------------------------------------------------------------------------------
# The document


def _command(path: Path, report: dict) -> str:
    """The command that wrote a report (recorded in it; for reports that do not record it, the usual one)."""
    if report.get("command"):
        return report["command"]
    if report["benchmark"] == "streaming":
        return f"dimgestor bench streaming --minutes {report.get('audio_minutes', 5):g} --out {_display(path)}"
    return f"dimgestor bench {report['benchmark'].replace('_', '-')} --out {_display(path)}"


def render(paths: list[Path], out: Path, figures_dir: Path | None = None, draw: bool = True) -> tuple[str, list[Path]]:
    """The markdown for ``paths``, and the plots (drawn into ``figures_dir`` when ``draw``)."""
    reports, skipped = load_reports(paths)
    doc_dir = out.parent
    figures_dir = figures_dir or (out.parent / out.stem)
    if draw:
        figures_dir.mkdir(parents=True, exist_ok=True)
    plots: list[Path] = []
    devices = sorted({_device(r) for _, r in reports}, key=lambda d: d != "cpu")
    lines = [
        "# Benchmarks",
        "",
        "<!-- Generated by `dimgestor bench report` from the JSON files listed below: do not edit by hand; rerun the "
        "benchmarks and the report command instead (figures here always come from the JSON). -->",
        "",
        "Mamba-2 against the AdaLN transformer, side by side: whole-sequence denoising per length, streaming per hop "
        "as the context grows, the speech encoder's share, and real-time streams. Generated from "
        + ", ".join(f"`{_display(p)}`" for p, _ in reports) + ".",
        "",
        "## Summary",
        "",
    ]
    for device in devices:
        label = next(_device_label(r) for _, r in reports if _device(r) == device)
        paragraphs = []
        for _, report in reports:
            if _device(report) == device and report["benchmark"] in SUMMARIES:
                paragraphs += SUMMARIES[report["benchmark"]](report)
        if paragraphs:
            lines += [f"**{label}.** " + paragraphs[0], ""] + [p + "\n" for p in paragraphs[1:]]
    if "cuda" not in devices:
        lines += [f"**GPU figures are missing:** no GPU benchmark JSON was given. On a CUDA machine, `{GPU_SCRIPT}` "
                  "installs the `gpu` extra from local wheel files and writes `bench/*_gpu.json`, then regenerates this "
                  "document.", ""]
    lines += ["## How to reproduce", "", "On the CPU machine (each command writes one JSON):", "", "```"]
    recorded = [_command(p, r) for p, r in reports if _device(r) == "cpu"]
    lines += recorded or list(CPU_COMMANDS)
    lines += ["```", "", f"On a CUDA machine: `{GPU_SCRIPT}` (see the script's header: the wheel folder, the runs, the "
              "JSON it writes)."]
    gpu_commands = [_command(p, r) for p, r in reports if _device(r) == "cuda"]
    if gpu_commands:
        lines += ["", "The GPU JSON here came from:", "", "```"] + gpu_commands + ["```"]
    lines += ["", "This document, from the JSON:", "", "```",
              "dimgestor bench report --json " + " ".join(_display(p) for p, _ in reports)
              + f" --out {_display(out)}", "```", ""]
    lines += ["## Machines", ""]
    lines += _table(
        ["JSON", "device", "processor / GPU", "cores", "memory GB", "threads", "torch", "date", "load average "
         "(start -> end)"],
        [[f"`{_display(p)}`", m.get("device", "cpu"), m.get("gpu") or m.get("processor") or "?",
          str(m.get("cpus_usable", "?")), f"{m['memory_gb']:.0f}" if m.get("memory_gb") else "?",
          str(m.get("threads", "?")), str(m.get("torch", "?")), m.get("date_utc", "?"),
          f"{(m.get('load_average_start') or ['?'])[0]} -> {(m.get('load_average_end') or ['?'])[0]}"]
         for p, m in ((p, r.get("machine", {})) for p, r in reports)])
    lines += ["", "These machines are shared: a load average above zero at the start means other work ran alongside; "
              "compare the ratios (measured interleaved in one run) rather than absolute times across runs.", ""]
    titles = {"denoiser": "## Denoiser: Mamba-2 vs transformer per sequence length",
              "per_hop": "## Streaming per hop: carried state vs KV cache as the context grows",
              "speech": "## Speech encoder", "streams": "## Real-time streams per device",
              "streaming": "## Streaming generator (real-time factor and latency)"}
    current = None
    for path, report in reports:
        kind = report["benchmark"]
        if kind != current:
            lines += [titles[kind], ""]
            current = kind
        stem = path.stem
        if kind == "denoiser":
            figures = plot_denoiser(report, figures_dir, stem) if draw else \
                [figures_dir / f"{stem}_time.png", figures_dir / f"{stem}_memory.png"]
            lines += section_denoiser(path, report, figures, doc_dir)
        elif kind == "per_hop":
            figures = plot_per_hop(report, figures_dir, stem) if draw else [figures_dir / f"{stem}.png"]
            lines += section_per_hop(path, report, figures, doc_dir)
        elif kind == "speech":
            figures = []
            lines += section_speech(path, report)
        elif kind == "streams":
            figures = []
            lines += section_streams(path, report)
        else:
            figures = []
            lines += section_streaming(path, report)
        plots += figures
        lines.append("")
    methods: dict[str, list[str]] = {}
    for _, report in reports:
        for key in ("timing_method", "memory_method", "flops_method"):
            if report.get(key) and report[key] not in methods.setdefault(key, []):
                methods[key].append(report[key])
    if methods:
        lines += ["## Method", ""]
        labels = {"timing_method": "Timing", "memory_method": "Memory", "flops_method": "FLOPs"}
        lines += [f"- {labels[key]}: {text}" for key, texts in methods.items() for text in texts]
        lines += ["- Models have random weights (seeded): time and memory do not depend on trained values. Both "
                  "backbones use the same AdaLN blocks, MLPs, conditioning and sampler; only the sequence mixer "
                  "differs.", ""]
    if skipped:
        lines += ["## Files not used", ""] + [f"- {note}" for note in skipped] + [""]
    return "\n".join(lines).rstrip("\n") + "\n", plots


def write_document(paths: list[Path], out: Path, figures_dir: Path | None = None) -> Path:
    text, plots = render(paths, out, figures_dir, draw=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    for note in load_reports(paths)[1]:
        print(f"skipped {note}", file=sys.stderr)
    print(f"wrote {out} and {len(plots)} plots in {(figures_dir or out.parent / out.stem)}")
    return out


def check_report(paths: list[Path], out: Path, figures_dir: Path | None = None) -> int:
    """0 when ``out`` is exactly what the JSON gives, else 1 (the plots are not compared)."""
    text, _ = render(paths, out, figures_dir, draw=False)
    if out.is_file() and out.read_text() == text:
        print(f"{out} matches the JSON")
        return 0
    print(f"{out} does not match the JSON; regenerate it with: dimgestor bench report --json "
          + " ".join(str(p) for p in paths) + f" --out {out}", file=sys.stderr)
    return 1
