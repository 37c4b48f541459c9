"""Build of the dimgestor_ros ament_python package (colcon) and of its pip install (dimgestor-launch)."""

from glob import glob
from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "dimgestor_ros"
HERE = Path(__file__).parent


def tree(folder: str) -> list[tuple[str, list[str]]]:
    """data_files entries installing every file under `folder` to share/<package>/<folder>/..."""
    entries: dict[str, list[str]] = {}
    for path in sorted(HERE.glob(f"{folder}/**/*")):
        if path.is_file() and "__pycache__" not in path.parts:
            relative = path.relative_to(HERE)
            entries.setdefault(str(Path("share", PACKAGE, relative.parent)), []).append(str(relative))
    return sorted(entries.items())


setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*"]),
    package_data={PACKAGE: ["data/*.wav", "data/*.txt", "data/*.md"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        *tree("config"),
        *tree("weights"),
    ],
    install_requires=[
        "torch==2.13.0",
        "numpy",
        "scipy",
        "librosa>=0.10",
        "soundfile",
        "soxr",
        "sounddevice",
        "safetensors",
        "pyyaml",
        "urdf-parser-py",
        "pytorch-kinematics",
        "tqdm",
        "matplotlib",
        "imageio-ffmpeg",
    ],
    extras_require={
        # Pretrained HuBERT speech encoders (transformers) and their ONNX export / runtime.
        "hubert": ["transformers", "onnxruntime", "onnx"],
        # CUDA-only fused kernels; see README "GPU".
        "gpu": ["mamba-ssm", "causal-conv1d", "onnxruntime-gpu"],
    },
    zip_safe=True,
    maintainer="dimgestor_ros maintainers",
    maintainer_email="dimgestor@example.com",
    description="Speech-driven co-speech gesture generation (DiM-Gestor) for ROS 2 robots and avatars.",
    license="Apache-2.0",
    python_requires=">=3.10",
    entry_points={
        "console_scripts": [
            "gesture_node = dimgestor_ros.nodes.gesture_node:main",
            "retarget_node = dimgestor_ros.nodes.retarget_node:main",
            "dimgestor-launch = dimgestor_ros.launcher:main",
            "dimgestor = dimgestor_ros.cli:main",
        ],
    },
)
