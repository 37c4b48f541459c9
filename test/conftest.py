"""Test session setup: offline model hubs, an isolated ROS 2 domain on loopback, a topic collector, and the
reliability catalogue marker that docs/reliability.md is generated from."""

from __future__ import annotations

import os
import random
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# A domain of our own keeps parallel sessions on this machine from hearing each other; DDS stays on loopback.
os.environ.setdefault("ROS_DOMAIN_ID", str(random.Random(os.getpid()).randint(1, 100)))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")


RELIABILITY_KINDS = ("bad input", "fault", "fuzz")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--reliability-catalogue", metavar="FILE", default=None,
                     help="write the reliability cases of the collected tests to FILE as JSON "
                     "(scripts/reliability_catalogue.py renders them into docs/reliability.md)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "reliability(kind, case, outcome): a case of the reliability catalogue (docs/reliability.md); "
        f"kind is one of {RELIABILITY_KINDS}, case names the bad input or fault, outcome what the test asserts.")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Check every reliability marker; with --reliability-catalogue, write one entry per collected test."""
    entries = []
    for item in items:
        marker = item.get_closest_marker("reliability")
        if marker is None:
            continue
        kind, case, outcome = marker.args
        if kind not in RELIABILITY_KINDS or not case or not outcome:
            raise pytest.UsageError(f"{item.nodeid}: reliability marker needs kind in {RELIABILITY_KINDS}, a case "
                                    f"and an outcome, got {marker.args}")
        callspec = getattr(item, "callspec", None)
        entries.append({"kind": kind, "case": case, "outcome": outcome, "test": item.nodeid,
                        "variant": callspec.id if callspec is not None else ""})
    target = config.getoption("--reliability-catalogue")
    if target:
        import json

        Path(target).write_text(json.dumps(entries, indent=1) + "\n", encoding="utf-8")


class TopicCollector:
    """Subscribes in this (test) process and records every message, spinning in a background thread."""

    def __init__(self, topics: dict[str, type]) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        self._rclpy = rclpy
        self.context = rclpy.context.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(f"test_collector_{os.getpid()}", context=self.context)
        self.messages: dict[str, list] = {topic: [] for topic in topics}
        self.arrival: dict[str, list[float]] = {topic: [] for topic in topics}
        qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        for topic, msg_type in topics.items():
            self.node.create_subscription(msg_type, topic, self._callback(topic), qos)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _callback(self, topic: str):
        def record(msg) -> None:
            self.messages[topic].append(msg)
            self.arrival[topic].append(time.monotonic())

        return record

    def _spin(self) -> None:
        while not self._stop.is_set() and self.context.ok():
            self.executor.spin_once(timeout_sec=0.05)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.executor.shutdown()
        self.node.destroy_node()
        self._rclpy.shutdown(context=self.context)


@pytest.fixture
def collector_factory():
    created: list[TopicCollector] = []

    def make(topics: dict[str, type], settle_s: float = 1.5) -> TopicCollector:
        collector = TopicCollector(topics)
        created.append(collector)
        time.sleep(settle_s)  # let DDS discovery announce the subscriptions before publishers start
        return collector

    yield make
    for collector in created:
        collector.close()
