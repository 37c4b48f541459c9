"""Training of DiM-Gestor: configuration, the loop (single process or DDP on gloo), and resumable checkpoints."""

from .config import TrainConfig

__all__ = ["TrainConfig"]
