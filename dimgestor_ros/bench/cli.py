"""The `bench` command's arguments and dispatch, shared by `dimgestor bench` and `python -m dimgestor_ros.bench`.

The second form imports only the benchmarks (not the training, retargeting or corpus tools), so it runs on a GPU
machine that has torch and the benchmark's own dependencies but not the whole package's (scripts/bench_gpu.sh).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import UserError

TARGETS = ("denoiser", "per-hop", "speech", "streams", "streaming", "soak", "report")
TARGET_HELP = (
    "denoiser: Mamba-2 vs transformer denoisers per sequence length and batch (time, memory, parameters, FLOPs, "
    "ratios, crossover); per-hop: streaming hop cost with carried state vs a transformer's KV cache as the context "
    "grows; speech: speech encoders (HuBERT base in PyTorch and ONNX Runtime, the built-in front end) per second "
    "of audio; streams: real-time streams one device sustains (batched); streaming: real-time factor and latency "
    "of the streaming generator per configuration; soak: an hour of speech through the running gesture and "
    "retargeting nodes (memory, CPU, latency, timestamp drift, URDF limits, exceptions; docs/soak.md); "
    "report: docs/benchmarks.md and its plots from the JSON files"
)


def add_bench_arguments(bench: argparse.ArgumentParser) -> None:
    bench.add_argument("target", choices=TARGETS, help=TARGET_HELP)
    bench.add_argument("--out", type=Path,
                       help="write the figures as JSON to this file (report: the markdown file to write)")
    bench.add_argument("--quick", action="store_true",
                       help="a short run for tests: two lengths or contexts, one repeat, small models only")
    bench.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    bench.add_argument("--device", default="cpu", help="denoiser, per-hop, speech, streams: cpu or cuda (default cpu)")
    bench.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                       help="denoiser, per-hop, streams: compute dtype (autocast when not float32; default float32)")
    bench.add_argument("--no-paper", action="store_true",
                       help="denoiser, per-hop: skip the paper-sized configuration (12 blocks x 1024)")
    bench.add_argument("--lengths", type=int, nargs="+", metavar="FRAMES",
                       help="denoiser: sequence lengths in frames (default 60 150 300 600 1800 3600)")
    bench.add_argument("--batches", type=int, nargs="+", metavar="N",
                       help="denoiser: batch sizes (default 1 8; the paper-sized pair: 1 on CPU)")
    bench.add_argument("--contexts", type=float, nargs="+", metavar="SECONDS",
                       help="per-hop: context lengths in seconds (default 2 10 30 60 120)")
    bench.add_argument("--batch", type=int, default=1, help="per-hop: streams per hop (default 1)")
    bench.add_argument("--modes", nargs="+", choices=["eager", "cuda_graph", "compile"],
                       help="streams: execution modes (default: eager on CPU; eager cuda_graph compile on CUDA)")
    bench.add_argument("--max-batch", type=int, help="streams: largest batch tried (default 64 on CPU, 4096 on CUDA)")
    bench.add_argument("--minutes", type=float, default=None,
                       help="streaming, soak: minutes of audio (default: streaming 5, soak 60)")
    bench.add_argument("--weights", type=Path, help="streaming: weights folder (default: the shipped weights)")
    bench.add_argument("--configs", nargs="+", metavar="NAME",
                       help="streaming: only these configurations (default: all; names in the JSON)")
    bench.add_argument("--json", type=Path, nargs="+", metavar="FILE",
                       help="report: the benchmark JSON files to report (e.g. bench/*.json); soak: render --doc "
                       "from this summary instead of running")
    bench.add_argument("--robot", default="generic_humanoid",
                       help="soak: robot config of the retargeting node (default generic_humanoid)")
    bench.add_argument("--paced", action="store_true",
                       help="soak: stream the file in real time on the wall clock (default: time-compressed on a "
                       "simulated clock)")
    bench.add_argument("--sample-interval", type=float, default=5.0, metavar="SECONDS",
                       help="soak: seconds of wall time between memory/CPU samples (default 5)")
    bench.add_argument("--clock-rate", type=float, default=8.0,
                       help="soak: the simulated clock runs at most this many times real time (default 8)")
    bench.add_argument("--samples", type=Path, metavar="FILE.jsonl", help="soak: write one JSON line per sample")
    bench.add_argument("--doc", type=Path, metavar="FILE.md", help="soak: write the markdown report")
    bench.add_argument("--logs", type=Path, metavar="FILE", help="soak: keep the nodes' output in this file")
    bench.add_argument("--figures", type=Path,
                       help="report: folder for the PNG plots (default: beside the markdown, <name>/)")
    bench.add_argument("--check", action="store_true",
                       help="report: write nothing; exit 1 if the markdown differs from what the JSON gives")


def _check_device(device: str) -> None:
    import torch

    try:
        kind = torch.device(device).type
    except RuntimeError as error:
        raise UserError(f"unknown device {device!r}; use cpu or cuda") from error
    if kind == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {device}: CUDA is not available on this machine")
    if kind not in ("cpu", "cuda"):
        raise UserError(f"--device {device}: only cpu and cuda are supported")


def run_bench(args: argparse.Namespace) -> int:
    target = args.target
    if args.threads < 1:
        raise UserError(f"--threads must be >= 1, got {args.threads}")
    if target == "report":
        from .document import check_report, write_document

        if not args.json:
            raise UserError("bench report needs --json FILE ... (e.g. --json bench/*.json)")
        out = args.out or Path("docs/benchmarks.md")
        if args.check:
            return check_report(args.json, out, args.figures)
        write_document(args.json, out, args.figures)
        return 0
    if target == "streaming":
        from .streaming import run

        minutes = 5.0 if args.minutes is None else args.minutes
        run(args.out, minutes=minutes, threads=args.threads, weights=args.weights, configs=args.configs)
        return 0
    if target == "soak":
        from .soak import run

        summary = run(args)
        return 0 if args.json or summary["acceptance"]["passed"] else 1
    _check_device(args.device)
    if target == "denoiser":
        from .denoiser import run

        for value in (args.lengths or []) + (args.batches or []):
            if value < 1:
                raise UserError(f"--lengths and --batches must be >= 1, got {value}")
        run(args.out, quick=args.quick, threads=args.threads, device=args.device, dtype=args.dtype,
            paper=not args.no_paper, lengths=args.lengths, batches=args.batches)
    elif target == "per-hop":
        from .per_hop import run

        if args.contexts and min(args.contexts) <= 0:
            raise UserError("--contexts must be > 0 seconds")
        run(args.out, quick=args.quick, threads=args.threads, device=args.device, dtype=args.dtype,
            paper=not args.no_paper, contexts=args.contexts, batch=args.batch)
    elif target == "speech":
        from .speech import run

        run(args.out, quick=args.quick, threads=args.threads, device=args.device)
    else:
        from .streams import run

        run(args.out, quick=args.quick, threads=args.threads, device=args.device, dtype=args.dtype,
            modes=args.modes, max_batch=args.max_batch)
    return 0


def build_parser(prog: str = "python -m dimgestor_ros.bench") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="dimgestor benchmarks; JSON with --out.")
    add_bench_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    import sys

    args = build_parser().parse_args(argv)
    try:
        return run_bench(args)
    except UserError as error:
        print(f"dimgestor bench: error: {error}", file=sys.stderr)
        return 2
