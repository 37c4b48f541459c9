"""Benchmarks (issue 8): quick runs of every bench target write the documented JSON keys; the causal streaming
forms give the numbers of one causal pass; the peak-memory method sees torch's allocations; the document
generator puts the JSON's figures in docs/benchmarks.md; the GPU script is valid bash whose plan the bench CLI
accepts, and its Python runs on CPU (the quick runs below are the script's own commands with --device cpu)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO, VENV_BIN

SCRIPT = REPO / "scripts" / "bench_gpu.sh"
DIMGESTOR = str(VENV_BIN / "dimgestor")
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHON": sys.executable}


def _plan(*options: str, out: Path | None = None) -> list[str]:
    env = {**ENV, **({"OUT": str(out)} if out else {})}
    result = subprocess.run(["bash", str(SCRIPT), ".", "--dry-run", *options], capture_output=True, text=True,
                            env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    return [line[2:] for line in result.stdout.splitlines() if line.startswith("+ ")]


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """The GPU script's quick plan run on CPU: {benchmark: (report, stdout)}."""
    out = tmp_path_factory.mktemp("bench")
    reports = {}
    for command in _plan("--quick", "--no-install", out=out):
        argv = shlex.split(command)
        if "bfloat16" in argv:
            continue  # the same run in bf16 autocast: its arguments are checked by test_gpu_script_plan_parses
        argv[argv.index("--device") + 1] = "cpu"
        argv[argv.index("--threads") + 1] = "1"
        result = subprocess.run(argv, capture_output=True, text=True, env=ENV, timeout=300, cwd=REPO)
        assert result.returncode == 0, (command, result.stderr[-3000:])
        path = Path(argv[argv.index("--out") + 1])
        report = json.loads(path.read_text())
        reports[report["benchmark"]] = (path, report, result.stdout)
    assert set(reports) == {"denoiser", "per_hop", "speech", "streams"}
    return reports


def test_gpu_script_is_valid_bash_and_its_plan_parses():
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0
    from dimgestor_ros.bench.cli import build_parser

    plan = _plan()
    installs = [c for c in plan if " pip install " in c]
    for package in ("mamba-ssm", "causal-conv1d", "onnxruntime-gpu"):  # setup.py's gpu extra, from local files
        assert any(c.endswith(package) and "--no-index --find-links" in c for c in installs), package
    benches = [shlex.split(c) for c in plan if " -m dimgestor_ros.bench " in c]
    targets = [argv[argv.index("dimgestor_ros.bench") + 1] for argv in benches]
    assert targets == ["denoiser", "denoiser", "per-hop", "speech", "streams", "report"]
    for argv in benches:
        args = build_parser().parse_args(argv[argv.index("dimgestor_ros.bench") + 1:])
        if args.target != "report":
            assert args.device == "cuda" and str(args.out).endswith(".json")
    if not torch.cuda.is_available():  # without a GPU the real run stops at once, with a one-line reason
        no_gpu = subprocess.run(["bash", str(SCRIPT), ".", "--no-install"], capture_output=True, text=True, env=ENV,
                                timeout=120)
        assert no_gpu.returncode == 2 and "no CUDA device" in no_gpu.stderr


def test_bench_denoiser_quick_reports_both_backbones_at_two_lengths(quick):
    _, report, stdout = quick["denoiser"]
    rows = {(r["config"], r["batch"], r["frames"]): r for r in report["results"]}
    configs = {"shipped_mamba2", "shipped_transformer", "matched_transformer"}
    assert set(rows) == {(c, b, n) for c in configs for b in (1, 2) for n in (60, 600)}
    for row in rows.values():
        assert row["parameters"] > 0 and row["ms_per_step"] > 0 and row["flops_per_frame_per_step"] > 0
        assert row["peak_step_memory_mb"] >= 0 and row["ms_per_sampling"] > 0
        assert row["ms_per_motion_second_per_step"] == pytest.approx(
            row["ms_per_step"] / (row["batch"] * row["frames"] / 30))
    # equal width and depth; the widened transformer matches the Mamba-2 denoiser's parameters within 5 %
    assert report["configs"]["shipped_mamba2"]["d_model"] == report["configs"]["shipped_transformer"]["d_model"]
    mamba = report["configs"]["shipped_mamba2"]["parameters_denoiser"]
    assert abs(report["configs"]["matched_transformer"]["parameters_denoiser"] / mamba - 1) < 0.05
    # attention is counted: the transformer's FLOPs per frame grow with the length, Mamba-2's do not
    t60, t600 = (rows[("shipped_transformer", 1, n)]["flops_per_frame_per_step"] for n in (60, 600))
    m60, m600 = (rows[("shipped_mamba2", 1, n)]["flops_per_frame_per_step"] for n in (60, 600))
    assert t600 > 1.5 * t60 and abs(m600 / m60 - 1) < 0.05
    # a longer sequence costs more per step, for every model
    for config in configs:
        assert rows[(config, 1, 600)]["ms_per_step"] > rows[(config, 1, 60)]["ms_per_step"]
    # the working memory of a longer sequence is larger (the method sees torch's allocations)
    for config in configs:
        assert rows[(config, 2, 600)]["peak_step_memory_mb"] > rows[(config, 1, 60)]["peak_step_memory_mb"]
    ratios = {(e["pairing"], e["batch"], e["frames"]): e for e in report["ratios"]}
    assert set(ratios) == {(p, b, n) for p in ("shipped", "shipped_equal_params") for b in (1, 2) for n in (60, 600)}
    for (pairing, batch, frames), entry in ratios.items():
        transformer = "shipped_transformer" if pairing == "shipped" else "matched_transformer"
        assert entry["time_ratio"] == pytest.approx(rows[("shipped_mamba2", batch, frames)]["ms_per_step"]
                                                    / rows[(transformer, batch, frames)]["ms_per_step"])
        assert entry["params_ratio"] > 0 and entry["flops_ratio"] > 0 and entry["sampling_ratio"] > 0
    for pairing in ("shipped", "shipped_equal_params"):
        for batch in ("1", "2"):
            found = report["crossover"][pairing][batch]
            assert found["status"] in ("crossover", "mamba2_faster_at_every_length",
                                       "transformer_faster_at_longest_length") and found["statement"]
    assert report["machine"]["threads"] == 1 and report["machine"]["processor"]
    assert "time ratio at 600 frames" in stdout and "crossover, shipped, batch 1" in stdout


def test_bench_per_hop_quick_reports_the_ratio_per_context(quick):
    _, report, _ = quick["per_hop"]
    assert set(report["per_hop_ratio"]) == {"2", "10"}
    rows = {f"{r['context_seconds']:g}": r for r in report["results"]}
    for key, ratio in report["per_hop_ratio"].items():
        row = rows[key]
        assert ratio == pytest.approx(row["mamba2_ms"] / row["transformer_ms"])
        assert row["mamba2_mode"] in ("scan", "step") and row["transformer_mode"] in ("kv_cache", "recompute")
        assert row["transformer_ms"] == min(row["transformer_kv_cache_ms"], row["transformer_recompute_ms"])
        assert row["context_frames"] == int(key) * 30
    # the Mamba-2 state does not grow with the context; the KV cache grows in proportion
    assert rows["2"]["mamba2_state_mb"] == rows["10"]["mamba2_state_mb"]
    assert rows["10"]["transformer_kv_cache_mb"] == pytest.approx(5 * rows["2"]["transformer_kv_cache_mb"], rel=0.02)
    assert report["per_hop_ratio_by_pair"]["shipped"] == report["per_hop_ratio"]
    assert report["windowed"]["shipped"]["ratio"] > 0
    assert report["goal"]["per_hop_ratio_at_60s_at_most"] == 0.25 and report["goal"]["met"] is None


def test_bench_speech_quick_measures_every_encoder_per_second_of_audio(quick):
    _, report, _ = quick["speech"]
    assert report["not_measured"] == {}
    assert set(report["encoders"]) == {"acoustic", "hubert_pytorch", "hubert_onnxruntime"}
    for figures in report["encoders"].values():
        assert figures["offline_ms_per_audio_second"] > 0
        assert set(figures["streaming"]) == {"0.05", "0.5"}
        assert 0 < figures["share_of_streaming_compute"] < 1
    assert report["hubert"]["size"] == "tiny" and report["hubert"]["parameters"] > 0
    assert report["model"]["ms_per_audio_second"] > 0


def test_bench_streams_quick_finds_the_real_time_streams(quick):
    _, report, _ = quick["streams"]
    found = report["results"]["shipped_mamba2"]["modes"]["eager"]
    assert 1 <= found["streams"] <= report["settings"]["max_batch"]
    kept = [p["batch"] for p in found["probes"] if p["keeps_up"]]
    assert max(kept) == found["streams"] and found["at_streams"]["ms_max"] <= 500


def _random_model(backbone: str):
    from dimgestor_ros.model.config import MambaSettings, ModelConfig
    from dimgestor_ros.model.gesture_model import DiMGestor

    torch.manual_seed(0)
    config = ModelConfig(backbone=backbone, d_model=32, n_blocks=2, n_heads=4, bidirectional=False,
                         mamba=MambaSettings(d_state=16, headdim=16, chunk_size=16))
    model = DiMGestor(config).eval()
    for name, parameter in model.named_parameters():  # the zero-initialised modulation would hide every mixer
        if "modulation" in name or "final" in name:
            torch.nn.init.normal_(parameter, std=0.1)
    return model


@pytest.mark.parametrize("backbone", ["mamba2", "transformer"])
def test_carried_context_gives_the_numbers_of_one_causal_pass(backbone):
    from dimgestor_ros.bench.causal import CausalDenoiser

    model = _random_model(backbone)
    denoiser = CausalDenoiser(model.denoiser, backbone, capacity=128)
    batch, past, new = 2, 37, 11
    x, local, style = torch.randn(batch, past + new, 63), torch.randn(batch, past + new, 32), torch.randn(batch, 32)
    t = torch.tensor([500, 20])
    per_token = torch.cat([torch.zeros(batch, past, dtype=torch.long), t[:, None].expand(batch, new)], dim=1)
    with torch.no_grad():
        whole, _ = denoiser(x, per_token, local, style, denoiser.empty(batch))  # one pass, context clean at t = 0
        context = denoiser.commit(x[:, :past], local[:, :past], style, denoiser.empty(batch), chunk=10)
        assert context.frames == past
        hop, same = denoiser(x[:, past:], t, local[:, past:], style, context)
        again, _ = denoiser(x[:, past:], t, local[:, past:], style, context)
    assert same is context
    torch.testing.assert_close(hop, whole[:, past:], rtol=0, atol=2e-5)
    torch.testing.assert_close(again, hop, rtol=0, atol=0)  # denoising new frames leaves the context as it was
    assert hop.abs().mean() > 0.01
    if backbone == "mamba2":
        with torch.no_grad():
            stepped, _ = denoiser.step_frames(x[:, past:], t, local[:, past:], style, context)
        torch.testing.assert_close(stepped, hop, rtol=0, atol=2e-5)
        assert context.state_bytes() == denoiser.empty(batch).state_bytes()  # the state does not grow
    else:
        assert context.state_bytes() > denoiser.empty(batch).state_bytes()


def test_causal_mamba2_needs_a_forward_only_model():
    from dimgestor_ros.bench.causal import CausalDenoiser
    from dimgestor_ros.model.config import ModelConfig
    from dimgestor_ros.model.gesture_model import DiMGestor

    with pytest.raises(ValueError, match="bidirectional=False"):
        CausalDenoiser(DiMGestor(ModelConfig(d_model=32, n_blocks=1)).denoiser, "mamba2")


def test_crossover_is_interpolated_on_log_axes():
    from dimgestor_ros.bench.denoiser import crossover

    found = crossover([60, 600, 6000], [4.0, 2.0, 0.5], fps=30)
    assert found["status"] == "crossover" and found["between_frames"] == [600, 6000]
    assert found["frames"] == round(600 * 10 ** 0.5)  # log ratio 1 -> -1 over a decade: halfway, sqrt(10)
    assert crossover([60, 600], [0.9, 0.5], 30)["status"] == "mamba2_faster_at_every_length"
    slower = crossover([60, 600], [0.9, 1.5], 30)
    assert slower["status"] == "transformer_faster_at_longest_length" and slower["frames"] is None
    assert "extrapolated_frames" not in slower  # rising: no extrapolation
    falling = crossover([60, 600], [4.0, 2.0], 30)
    assert falling["frames"] is None and falling["extrapolated_frames"] == 6000 and "not measured" in falling["statement"]


def test_peak_memory_probe_sees_a_torch_allocation():
    code = ("import torch; from dimgestor_ros.bench.memory import reset_peak_rss, _status_mb\n"
            "assert reset_peak_rss(); before = _status_mb('VmRSS')\n"
            "x = torch.ones(16 * 2**20); del x\n"  # 64 MB, freed before the reading
            "print(_status_mb('VmHWM') - before, _status_mb('VmRSS') - before)")
    env = {**ENV, "MALLOC_MMAP_THRESHOLD_": "4096", "MALLOC_TRIM_THRESHOLD_": "0", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    peak, after = map(float, result.stdout.split())
    assert 63 < peak < 70 and after < 2


def _row(doc: str, first_cell: str, after: str) -> str:
    """The first table row starting with ``first_cell`` after the line containing ``after``."""
    text = doc[doc.index(after):]
    return next(line for line in text.splitlines() if line.startswith(f"| {first_cell} |"))


def test_report_puts_the_json_figures_in_the_document(quick, tmp_path):
    from dimgestor_ros.bench.document import fmt_ms, fmt_ratio

    paths = {kind: tmp_path / path.name for kind, (path, _, _) in quick.items()}
    for kind, (path, report, _) in quick.items():
        paths[kind].write_text(json.dumps(report))
    out = tmp_path / "docs" / "benchmarks.md"
    made = subprocess.run([DIMGESTOR, "bench", "report", "--json", *map(str, paths.values()), "--out", str(out)],
                          capture_output=True, text=True, env=ENV, timeout=120, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    doc = out.read_text()
    denoiser = quick["denoiser"][1]
    for entry in denoiser["ratios"]:
        row = _row(doc, f"{entry['frames']} ({entry['seconds']:g} s)", f"#### `{entry['pairing']}`, batch {entry['batch']}")
        assert f"| {fmt_ratio(entry['time_ratio'])} |" in row and f"| {fmt_ratio(entry['sampling_ratio'])} |" in row
    for pairing, per_batch in denoiser["crossover"].items():
        for found in per_batch.values():
            assert found["statement"] in doc
    per_hop = quick["per_hop"][1]
    for row in per_hop["results"]:
        key = f"{row['context_seconds']:g}"
        line = _row(doc, f"{key} ({row['context_frames']})", "## Streaming per hop")
        assert f"| {fmt_ratio(per_hop['per_hop_ratio'][key])} |" in line
        assert f"| {fmt_ms(row['mamba2_ms'])} |" in line and f"| {fmt_ms(row['transformer_kv_cache_ms'])} |" in line
    speech = quick["speech"][1]
    for name, figures in speech["encoders"].items():
        assert f"| {fmt_ms(figures['offline_ms_per_audio_second'])} |" in _row(doc, name, "## Speech encoder")
    streams = quick["streams"][1]["results"]["shipped_mamba2"]["modes"]["eager"]["streams"]
    assert f"| shipped_mamba2 | eager | {streams} |" in doc
    assert denoiser["machine"]["processor"] in doc and denoiser["command"] in doc
    assert "GPU figures are missing" in doc and "scripts/bench_gpu.sh" in doc
    assert "## Summary" in doc and "Crossover (equal shape)" in doc
    images = re.findall(r"!\[[^]]*\]\(([^)]+)\)", doc)
    assert len(images) == 3
    for image in images:
        assert (out.parent / image).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    check = [DIMGESTOR, "bench", "report", "--json", *map(str, paths.values()), "--out", str(out), "--check"]
    assert subprocess.run(check, capture_output=True, env=ENV, timeout=120, cwd=tmp_path).returncode == 0
    # change a figure in the JSON: the stale document fails the check, the regenerated one shows the new figure
    changed = json.loads(paths["per_hop"].read_text())
    changed["per_hop_ratio"]["10"] = 0.1234
    next(r for r in changed["results"] if r["context_seconds"] == 10)["per_hop_ratio"] = 0.1234
    paths["per_hop"].write_text(json.dumps(changed))
    assert subprocess.run(check, capture_output=True, env=ENV, timeout=120, cwd=tmp_path).returncode == 1
    assert subprocess.run(check[:-1], capture_output=True, env=ENV, timeout=120, cwd=tmp_path).returncode == 0
    assert "| 0.12 |" in _row(out.read_text(), "10 (300)", "## Streaming per hop")


def test_report_refuses_a_missing_json_in_one_line(tmp_path):
    result = subprocess.run([DIMGESTOR, "bench", "report", "--json", str(tmp_path / "none.json"), "--out",
                             str(tmp_path / "b.md")], capture_output=True, text=True, env=ENV, timeout=60)
    assert result.returncode == 2 and "benchmark JSON not found" in result.stderr and "Traceback" not in result.stderr
