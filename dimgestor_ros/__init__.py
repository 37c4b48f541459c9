"""dimgestor_ros: speech-driven co-speech gesture generation (DiM-Gestor) for ROS 2.

The core (audio, features, model, diffusion, streaming, motion, retargeting) is plain Python + PyTorch and
imports without rclpy; the ROS nodes in ``dimgestor_ros.nodes`` are thin adapters over it.
"""

__version__ = "0.1.0"
