"""`dimgestor`: the command-line tools (benchmarks now; generation, training and evaluation as they land)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import UserError


def _bench(args: argparse.Namespace) -> int:
    if args.target == "denoiser":
        from .bench.denoiser import run

        run(args.out, quick=args.quick, threads=args.threads)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dimgestor", description="dimgestor_ros command-line tools.")
    commands = parser.add_subparsers(dest="command", required=True)
    bench = commands.add_parser("bench", help="measure speed and memory", description="Benchmarks; JSON with --out.")
    bench.add_argument("target", choices=["denoiser"], help="denoiser: both backbones side by side per window length")
    bench.add_argument("--out", type=Path, help="write the figures as JSON to this file")
    bench.add_argument("--quick", action="store_true", help="two window lengths and fewer repeats")
    bench.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    bench.set_defaults(handler=_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except UserError as error:
        print(f"dimgestor: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
