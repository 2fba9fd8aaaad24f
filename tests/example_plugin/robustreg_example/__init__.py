"""An example third-party robustreg plugin, installed in CI to prove the entry-point path.

It registers ``example-sign-noise``: the corners of the linf ball picked at random, the baseline any
attack must beat.  Copy this folder to start a plugin of your own.
"""

from __future__ import annotations

import torch

import robustreg


class SignNoise(robustreg.Attack):
    """Random-sign noise at the linf ball's corners, x + eps * s with s uniform in {-1, +1}, clipped to the box.

    Not from a paper: a baseline.  Norm: linf.  ``tries`` draws per image; the first that fools the model
    is kept.  A score attack reports its queries.
    Example: ``registry.build_attack("example-sign-noise", ThreatModel("linf", 0.1), seed=0)(model, x, y)``.
    """

    name = "example-sign-noise"
    info = robustreg.AttackInfo(norms=("linf",), kind="score", randomized=True, source="robustreg-example",
                                toolkit="example", summary="random-sign noise baseline (example plugin)")
    params = robustreg.ParamSet([
        robustreg.Param("tries", "int", 1, "random draws per image; the first that fools the model is kept", low=1),
    ])
    tries: int

    def perturb(self, model, x, y, generator, target=None):
        best = x.clone()
        for _ in range(self.tries):
            signs = torch.randint(0, 2, x.shape, generator=generator, device=x.device).to(x.dtype) * 2 - 1
            candidate = (x + self.threat.eps * signs).clamp(*self.threat.box)  # corners of the ball, in the box
            with torch.no_grad():
                fooled = model(candidate).argmax(dim=1) != y
            best[fooled] = candidate[fooled]
        return robustreg.AttackResult(best, queries=torch.full((x.shape[0],), float(self.tries), device=x.device))


@robustreg.hookimpl
def robustreg_register_attacks(registrar):
    registrar.add_attack(SignNoise.name, SignNoise)
