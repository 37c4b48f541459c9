"""Arm inverse kinematics: robot joint angles whose upper arm and forearm point where the human's do.

pytorch-kinematics builds the arm's kinematic chain from the URDF (origins, rpy, axes, fixed joints) and runs
batched forward kinematics; the solve is a bounded Levenberg-Marquardt written here because the target is two
directions (elbow and wrist relative to the shoulder), which the library's single-end-effector pose IK does not
express: a 4-DoF arm given only a hand position has a free elbow, given both directions it has none.

Each frame is solved on its own (from a few fixed seeds, with a small pull towards the home pose that settles
redundancies such as the twist of a straight arm), so the result does not depend on how a stream is cut into
chunks. Joint limits bound every step of the solver. Why pytorch-kinematics: it installs as pure Python on top
of torch (already a dependency), is maintained, and evaluates thousands of configurations in one call; torch and
it are imported only when a robot with IK is loaded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UserError
from .robot import IKChainConfig


class ArmIK:
    """Solves one IKChainConfig for direction targets, frame by frame, within joint limits."""

    def __init__(self, urdf_path: Path, chain: IKChainConfig, joint_names: list[str], lower: np.ndarray,
                 upper: np.ndarray, home: np.ndarray, iterations: int = 30) -> None:
        """``joint_names``: the robot joints this group drives, with their limits and home values (K,)."""
        import torch
        import pytorch_kinematics as pk

        self.torch = torch
        self.chain = chain
        try:
            serial = pk.build_serial_chain_from_urdf(urdf_path.read_bytes(), end_link_name=chain.wrist_link,
                                                     root_link_name=chain.base_link)
        except Exception as error:  # the library raises ValueError/KeyError for links it cannot find
            raise UserError(f"cannot build IK chain {chain.name!r} from {urdf_path}: {error}") from None
        self.serial = serial.to(dtype=torch.float64)
        chain_joints = self.serial.get_joint_parameter_names()  # movable joints, base to tip
        self.active = [chain_joints.index(name) for name in joint_names]  # (K,) positions in the chain vector
        self.rest = torch.zeros(len(chain_joints), dtype=torch.float64)  # joints on the chain not driven: at 0
        chain_lower, chain_upper = self.serial.get_joint_limits()
        for i, (lo, hi) in enumerate(zip(chain_lower, chain_upper)):
            if i not in self.active and lo is not None and hi is not None:
                self.rest[i] = min(max(0.0, float(lo)), float(hi))
        self.frame_index = [self.serial.frame_to_idx[name]
                            for name in (chain.shoulder_link, chain.elbow_link, chain.wrist_link)]
        self.lower = torch.as_tensor(lower, dtype=torch.float64)  # (K,)
        self.upper = torch.as_tensor(upper, dtype=torch.float64)
        self.home = torch.as_tensor(np.clip(home, lower, upper), dtype=torch.float64)
        self.iterations = iterations
        # Seeds: home, the middle of the range and two fixed spread-out poses; the best solution per frame wins.
        rng = np.random.default_rng(0)
        spread = [lower + (upper - lower) * rng.uniform(0.2, 0.8, len(lower)) for _ in range(2)]
        self.seeds = torch.as_tensor(np.stack([np.clip(home, lower, upper), (lower + upper) / 2, *spread]),
                                     dtype=torch.float64)  # (S, K)
        points = self._points(self.home[None])[0]  # (3, 3) shoulder, elbow, wrist at home
        for a, b, what in ((0, 1, "shoulder_link and elbow_link"), (1, 2, "elbow_link and wrist_link")):
            if float(torch.linalg.norm(points[b] - points[a])) < 1e-4:
                raise UserError(f"IK chain {chain.name!r} in {urdf_path}: {what} are at the same point; pick links "
                                "whose origins are the shoulder, elbow and wrist")

    def set_bounds(self, lower: np.ndarray, upper: np.ndarray) -> None:
        """Tighter joint limits (K,) for the next solves (runtime tuning); seeds and home are kept inside."""
        torch = self.torch
        self.lower = torch.as_tensor(np.asarray(lower, dtype=float), dtype=torch.float64)
        self.upper = torch.as_tensor(np.asarray(upper, dtype=float), dtype=torch.float64)
        self.home = torch.minimum(torch.maximum(self.home, self.lower), self.upper)
        self.seeds = torch.minimum(torch.maximum(self.seeds, self.lower), self.upper)

    def _points(self, x):
        """(M, K) driven joint values -> (M, 3, 3) shoulder, elbow and wrist positions in the base link frame."""
        q = self.rest.expand(x.shape[0], -1).clone()
        q[:, self.active] = x
        transforms = self.serial.forward_kinematics_tensor(q)  # (frames, M, 4, 4)
        return transforms[self.frame_index, :, :3, 3].transpose(0, 1)  # (M, 3, 3)

    def _residual(self, x, targets):
        """(M, K), targets (M, 6) -> residuals (M, 6 + K): direction errors, then the pull towards home."""
        torch = self.torch
        p = self._points(x)
        upper = p[:, 1] - p[:, 0]
        fore = p[:, 2] - p[:, 1]
        upper = upper / torch.linalg.norm(upper, dim=1, keepdim=True)
        fore = fore / torch.linalg.norm(fore, dim=1, keepdim=True)
        pull = self.chain.regularization * (x - self.home)
        return torch.cat([upper - targets[:, :3], fore - targets[:, 3:], pull], dim=1)

    def solve(self, upper_dirs: np.ndarray, fore_dirs: np.ndarray, block: int = 256) -> np.ndarray:
        """Unit directions (N, 3) + (N, 3) in the base link's axes -> joint values (N, K); NaN rows stay NaN.

        Frames are solved ``block`` at a time, which bounds memory for long clips (results do not depend on it
        beyond the solver's 1e-6 rad tolerance).
        """
        n, k = len(upper_dirs), len(self.active)
        out = np.full((n, k), np.nan)
        valid = np.flatnonzero(np.isfinite(upper_dirs).all(axis=1) & np.isfinite(fore_dirs).all(axis=1))
        for start in range(0, len(valid), block):
            rows = valid[start:start + block]
            out[rows] = self._solve(np.concatenate([upper_dirs[rows], fore_dirs[rows]], axis=1))
        return out

    def _solve(self, directions: np.ndarray) -> np.ndarray:
        """(V, 6) finite unit directions -> (V, K) joint values, the best of all seeds per frame."""
        torch = self.torch
        k = len(self.active)
        targets = torch.as_tensor(directions, dtype=torch.float64)  # (V, 6)
        v, s = targets.shape[0], self.seeds.shape[0]
        targets = targets.repeat_interleave(s, dim=0)  # (V*S, 6): every frame from every seed
        x = self.seeds.repeat(v, 1).clone()  # (V*S, K)
        lower, upper = self.lower.expand_as(x), self.upper.expand_as(x)
        eye = torch.eye(k, dtype=torch.float64)
        damping = torch.full((x.shape[0], 1, 1), 1e-3, dtype=torch.float64)
        residual = self._residual(x, targets)
        cost = (residual ** 2).sum(dim=1)
        eps = 1e-7
        for _ in range(self.iterations):
            # Forward-difference Jacobian, all frames and seeds in one batched FK: (M, R, K).
            perturbed = (x[:, None, :] + eps * eye).reshape(-1, k)
            shifted = self._residual(perturbed, targets.repeat_interleave(k, dim=0)).reshape(x.shape[0], k, -1)
            jacobian = ((shifted - residual[:, None, :]) / eps).transpose(1, 2)
            jtj = jacobian.transpose(1, 2) @ jacobian
            gradient = (jacobian.transpose(1, 2) @ residual[:, :, None])
            step = torch.linalg.solve(jtj + damping * (eye + torch.diag_embed(jtj.diagonal(dim1=1, dim2=2))),
                                      -gradient)[:, :, 0]
            candidate = torch.minimum(torch.maximum(x + step, lower), upper)  # projected onto the joint limits
            new_residual = self._residual(candidate, targets)
            new_cost = (new_residual ** 2).sum(dim=1)
            better = new_cost < cost
            x = torch.where(better[:, None], candidate, x)
            residual = torch.where(better[:, None], new_residual, residual)
            cost = torch.where(better, new_cost, cost)
            damping = torch.where(better[:, None, None], damping * 0.3, damping * 10.0).clamp(1e-9, 1e9)
            if float(step.abs().max()) < 1e-6:  # radians: far below anything a robot can show
                break
        best = cost.reshape(v, s).argmin(dim=1)  # (V,)
        return x.reshape(v, s, k)[torch.arange(v), best].numpy()  # (V, K)
