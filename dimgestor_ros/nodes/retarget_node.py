"""retarget_node: /gesture_joints (source skeleton) in, robot joint trajectories out, always within limits.

A thin adapter over dimgestor_ros.retarget: the robot config and URDF give the joint map and limits, the
JointMapper clamps and rate-limits; this node converts messages and keeps the output times consistent.
"""

from __future__ import annotations

from builtin_interfaces.msg import Duration
from rclpy.node import Node
from sensor_msgs.msg import JointState
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from ..motion.skeleton import HUMANOID
from ..retarget.mapper import JointMapper
from ..retarget.robot import load_robot_config
from .common import JOINTS_QOS, declare, run_node


class RetargetNode(Node):
    def __init__(self) -> None:
        super().__init__("retarget_node")
        robot = declare(self, "robot", "generic_humanoid",
                        "Robot config name under config/robots/ or a path to a robot YAML.", read_only=True)
        output_topic = declare(self, "output_topic", "/retarget/joint_trajectory",
                               "Topic of the robot JointTrajectory (a JointTrajectoryController's command).",
                               read_only=True)
        self.publish_joint_states = declare(self, "publish_joint_states", False,
                                            "Also publish the first point of each trajectory as a JointState.",
                                            read_only=True)
        frame_rate = declare(self, "frame_rate", float(30), "Frame rate of incoming /gesture_joints.", (1.0, 1000.0),
                             read_only=True)
        self.robot = load_robot_config(robot)
        self.mapper = JointMapper(self.robot, frame_rate)
        self.source_names: list[str] | None = None
        self.trajectory_pub = self.create_publisher(JointTrajectory, output_topic, JOINTS_QOS)
        self.joint_state_pub = self.create_publisher(JointState, "joint_states", 10) if self.publish_joint_states else None
        self.create_subscription(JointTrajectory, "gesture_joints", self._on_gesture, JOINTS_QOS)
        self.get_logger().info(
            f"retargeting to {self.robot.name} ({len(self.robot.joints)} joints) on {output_topic}"
        )

    def _on_gesture(self, msg: JointTrajectory) -> None:
        import numpy as np

        if not msg.points:
            return
        if list(msg.joint_names) != HUMANOID.dof_names:
            self.get_logger().warn("gesture_joints carries a different skeleton; message ignored", throttle_duration_sec=5.0)
            return
        poses = np.array([point.positions for point in msg.points], dtype=float)  # (N, D)
        commands = self.mapper.map(poses)  # (N, J)
        out = JointTrajectory()
        out.header = msg.header
        out.joint_names = self.robot.joint_names
        for point, command in zip(msg.points, commands):
            robot_point = JointTrajectoryPoint()
            robot_point.positions = command.tolist()
            robot_point.time_from_start = Duration(sec=point.time_from_start.sec, nanosec=point.time_from_start.nanosec)
            out.points.append(robot_point)
        self.trajectory_pub.publish(out)
        if self.joint_state_pub is not None:
            state = JointState(name=self.robot.joint_names, position=commands[0].tolist())
            state.header = msg.header
            self.joint_state_pub.publish(state)


def main(args: list[str] | None = None) -> int:
    return run_node(RetargetNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
