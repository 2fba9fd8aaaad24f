"""An example third-party robustreg plugin, installed in CI to prove the entry-point path.

It registers ``example-sign-noise``: the corners of the linf ball picked at random, the baseline any
attack must beat.  Copy this folder to start a plugin of your own.
"""

from __future__ import annotations

import torch

import robustreg


class SignNoise(robustreg.Attack):
    """Random-sign noise at the linf ball's corners, x + eps * s with s uniform in {-1, +1}.

    Not from a paper: a baseline.  Norm: linf.  Parameters: none besides the threat model and seed.
    Example: ``registry.build_attack("example-sign-noise", ThreatModel("linf", 0.1), seed=0)(model, x, y)``.
    """

    name = "example-sign-noise"
    info = robustreg.AttackInfo(norms=("linf",), kind="score", randomized=True, source="robustreg-example",
                                toolkit="example", summary="random-sign noise baseline (example plugin)")

    def perturb(self, model, x, y, generator, target=None):
        signs = torch.randint(0, 2, x.shape, generator=generator, device=x.device).to(x.dtype) * 2 - 1
        return x + self.threat.eps * signs


@robustreg.hookimpl
def robustreg_register_attacks(registrar):
    registrar.add_attack(SignNoise.name, SignNoise)
