"""`dimgestor`: the command-line tools (synthetic corpus, training, evaluation, benchmarks, ONNX export)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import UserError


def _bench(args: argparse.Namespace) -> int:
    from .bench.cli import run_bench

    return run_bench(args)


def _export_onnx(args: argparse.Namespace) -> int:
    from .features.onnx_encoder import export_hubert_onnx

    out = export_hubert_onnx(args.model_dir, args.output, layer=args.layer, opset=args.opset)
    print(f"wrote {out}; use it with speech encoder 'hubert-onnx' (onnx_path={out})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dimgestor", description="dimgestor_ros command-line tools.")
    commands = parser.add_subparsers(dest="command", required=True)
    bench = commands.add_parser("bench", help="measure speed and memory", description="Benchmarks; JSON with --out.")
    from .bench.cli import add_bench_arguments

    add_bench_arguments(bench)
    bench.set_defaults(handler=_bench)
    export = commands.add_parser(
        "export-onnx", help="export a HuBERT speech encoder to ONNX",
        description="Export a local HuBERT checkpoint folder (transformers format) to ONNX for onnxruntime.")
    export.add_argument("model_dir", type=Path, help="HuBERT folder (config.json + weights), e.g. chinese-hubert-base")
    export.add_argument("-o", "--output", type=Path, required=True, help="the .onnx file to write")
    export.add_argument("--layer", type=int, default=-1, help="hidden layer to export (default -1: the last)")
    export.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    export.set_defaults(handler=_export_onnx)

    from .corpus.synthetic import add_make_corpus_parser
    from .generate import add_generate_parser
    from .evaluation.report import add_eval_parser
    from .retarget.offline import add_retarget_parser
    from .training.trainer import add_train_parser

    add_generate_parser(commands)
    add_make_corpus_parser(commands)
    add_train_parser(commands)
    add_eval_parser(commands)
    add_retarget_parser(commands)
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
