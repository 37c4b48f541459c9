"""dimgestor-launch: start the node set of gesture.launch.py on an install without ros2launch (pip-only).

Node command lines are built the way launch_ros builds them: ``--ros-args -r __node:=NAME --params-file FILE``
with the launch arguments' overrides in a second, temporary parameters file. Ctrl-C (SIGINT) and SIGTERM are
forwarded to every node; the launcher exits 0 when the gesture node ends cleanly and non-zero if any node fails.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from .errors import UserError
from .launch_spec import LAUNCH_ARGUMENTS, NodeSpec, node_set, resolve_arguments

STOP_TIMEOUT_S = 10.0


def parse_launch_arguments(tokens: list[str]) -> dict[str, str]:
    """Accept ``name:=value`` (as ros2 launch does) and ``name=value``."""
    values = {}
    for token in tokens:
        separator = ":=" if ":=" in token else "=" if "=" in token else None
        if separator is None:
            raise UserError(f"argument {token!r} is not name:=value; known names: "
                            f"{', '.join(a.name for a in LAUNCH_ARGUMENTS)}")
        name, value = token.split(separator, 1)
        values[name] = value
    return values


def node_command(spec: NodeSpec, overrides_file: Path) -> list[str]:
    return [
        sys.executable, "-m", spec.module,
        "--ros-args", "-r", f"__node:={spec.name}",
        "--params-file", str(spec.params_file),
        "--params-file", str(overrides_file),
    ]


def write_overrides(spec: NodeSpec, directory: Path) -> Path:
    path = directory / f"{spec.name}_overrides.yaml"
    path.write_text(yaml.safe_dump({f"/{spec.name}": {"ros__parameters": spec.overrides}}))
    return path


def run(specs: list[NodeSpec]) -> int:
    with tempfile.TemporaryDirectory(prefix="dimgestor_launch_") as tmp:
        processes: dict[str, subprocess.Popen] = {}
        for spec in specs:
            command = node_command(spec, write_overrides(spec, Path(tmp)))
            processes[spec.name] = subprocess.Popen(command, start_new_session=True)
            print(f"[dimgestor-launch] started {spec.name} (pid {processes[spec.name].pid})", flush=True)

        stopping = {"signal": None}

        def forward(signum, _frame):
            stopping["signal"] = signum

        previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
        code = 0
        try:
            enders = [spec.name for spec in specs if spec.ends_launch]
            while stopping["signal"] is None:
                ended = {name: p.returncode for name, p in processes.items() if p.poll() is not None}
                failed = {name: rc for name, rc in ended.items() if rc != 0}
                if failed:
                    name, rc = next(iter(failed.items()))
                    print(f"[dimgestor-launch] {name} died with exit code {rc}; stopping the others", file=sys.stderr)
                    code = rc if rc > 0 else 1
                    break
                if any(name in ended for name in enders) or len(ended) == len(processes):
                    break
                time.sleep(0.1)
            code = _stop_all(processes, signal.SIGINT) or code
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return code


def _stop_all(processes: dict[str, subprocess.Popen], signum: int) -> int:
    """Signal the running nodes, wait for them, and return the first failing exit code (0 if none)."""
    for process in processes.values():
        if process.poll() is None:
            process.send_signal(signum)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    code = 0
    for name, process in processes.items():
        try:
            rc = process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"[dimgestor-launch] {name} did not stop in {STOP_TIMEOUT_S:.0f} s; killing it", file=sys.stderr)
            process.kill()
            rc = process.wait()
        if rc not in (0, -signal.SIGINT) and code == 0:
            print(f"[dimgestor-launch] {name} exited with code {rc}", file=sys.stderr)
            code = rc if rc > 0 else 1
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="dimgestor-launch",
        description="Start the dimgestor_ros nodes (the node set of gesture.launch.py) without ros2 launch.",
        epilog="launch arguments:\n" + "\n".join(
            f"  {a.name}:=VALUE  {a.description} (default: {a.default or 'empty'})" for a in LAUNCH_ARGUMENTS),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("arguments", nargs="*", metavar="name:=value")
    args = parser.parse_args(argv)
    try:
        specs = node_set(resolve_arguments(parse_launch_arguments(args.arguments)))
    except UserError as error:
        print(f"dimgestor-launch: error: {error}", file=sys.stderr)
        return 2
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    return run(specs)


if __name__ == "__main__":
    raise SystemExit(main())
