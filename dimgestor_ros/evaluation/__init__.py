"""Gesture-quality evaluation: metrics on poses and joint kinematics, and the `dimgestor eval` report."""
