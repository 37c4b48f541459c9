"""Where the package's shared files (config/, weights/, launch/, the demo clip) are on this install.

A colcon install puts them in <prefix>/share/dimgestor_ros (found through the ament index); a pip install puts
them in <venv>/share/dimgestor_ros; a source checkout (editable install) has them beside the package.
"""

from __future__ import annotations

import os
import sys
from functools import lru_cache
from pathlib import Path

PACKAGE = "dimgestor_ros"


@lru_cache(maxsize=1)
def share_dir() -> Path:
    candidates = []
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix and (Path(prefix) / "share" / "ament_index" / "resource_index" / "packages" / PACKAGE).exists():
            candidates.append(Path(prefix) / "share" / PACKAGE)
    checkout = Path(__file__).resolve().parent.parent
    candidates += [checkout, Path(sys.prefix) / "share" / PACKAGE]
    for candidate in candidates:
        if (candidate / "config" / "gesture.yaml").is_file():
            return candidate
    return checkout


def config_dir() -> Path:
    return share_dir() / "config"


def default_params_file() -> Path:
    return config_dir() / "gesture.yaml"


def default_weights_dir() -> Path:
    return share_dir() / "weights" / "dimgestor_default"


def demo_audio_file() -> Path:
    """The shipped speech clip streamed when no microphone is present (see dimgestor_ros/data/README.md)."""
    return Path(__file__).resolve().parent / "data" / "demo_speech.wav"


def robot_config_file(robot: str) -> Path:
    """``robot`` is a name under config/robots/ or a path to a robot YAML."""
    if robot.endswith((".yaml", ".yml")) or os.sep in robot:
        return Path(robot)
    return config_dir() / "robots" / f"{robot}.yaml"
