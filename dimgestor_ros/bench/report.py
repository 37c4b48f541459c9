"""What every benchmark shares: resident memory readings and writing its JSON report."""

from __future__ import annotations

import json
import resource
from pathlib import Path


def rss_mb() -> float:
    """Current resident memory of this process, MiB."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def write_report(report: dict, out: Path | None) -> None:
    if out is None:
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
