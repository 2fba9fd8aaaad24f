"""--adaptive on deliberately broken real checkpoints: does it find the robustness the break hides?

For the PGD-trained LeNet-5 (MNIST, eps 0.3) and resnet4b (CIFAR-10, eps 2/255) from ../shared/models,
five breaks that leave the weights alone:

- ``scale``: logits x 1e4 (cross-entropy saturates; same decisions);
- ``softmax``: the model returns probabilities (same decisions);
- ``noise``: Gaussian noise on the input at every call (a randomised model: decisions change);
- ``quantise``: the input rounded to 8 levels (no gradient; decisions change);
- ``front``: a smooth staircase in front of the model, ``(floor(255 x) + sigmoid(400 (frac(255 x) - 0.5))) /
  255``, which leaves the pixels (multiples of 1/255) where they are and has a gradient of exactly zero
  almost everywhere (gradient masking by a smooth function; decisions practically unchanged).

Per model and break, on the same images: the unbroken model's robust accuracy under PGD and under
standard AutoAttack, plain ``evaluate`` of the broken model (the overestimate), ``evaluate(...,
adaptive=True)`` (the remedies' result), and for the breaks that change decisions an attack written by hand
for them (PGD and APGD through BPDA for the quantiser and the staircase; for the noise, the worse for the
model of PGD-100 with steps of eps/10 on the mean gradient of 20 draws and AutoAttack's APGD-CE and APGD-DLR
with EoT over 20 draws, its version for randomised defenses, each judged by a 9-draw majority).  The
target: the adaptive number within 3 points of the unbroken model's (the lower of PGD and AutoAttack) where
the break keeps the decisions (scale, softmax, front) and of the hand-written attack where it does not
(quantise, noise).

Every finished piece (a reference, a plain or adaptive run, a hand attack) is kept as JSON in ``--cache``,
keyed by model, break, n and the settings, so a rerun reuses it and a stopped run loses only the piece it
was in; ``--stop-at HH:MM`` (UTC) starts no piece after that time (the rows left show "not run").

    python benchmarks/adaptive.py --n 500            # both models; --models mnist for one
    python benchmarks/adaptive.py --n 500 --breaks ""   # the unbroken references only
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import importlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import robustreg
from _common import markdown_table, real_model_and_data, write_report
from robustreg.evaluation import evaluate
from robustreg.testing.breaks import Noisy, Quantise, Scaled, Softmaxed, Staircase

#: Bump when a change alters what a cached piece holds (the key holds the settings below besides).
VERSION = 2
SETTINGS = {  # model -> (eps, PGD steps, step size, noise sigma)
    "mnist": (0.3, 40, 0.01, 0.1),
    "cifar": (2 / 255, 20, 0.5 / 255, 4 / 255),
}
# the hand-written EoT attacks: draws per gradient, forwards per verdict, PGD-EoT's steps and step / eps
DRAWS, VOTES, EOT_STEPS, EOT_STEP = 20, 9, 100, 0.1
AUTOATTACK = "autoattack:standard"
DECISIONS_KEPT = ("scale", "softmax", "front")  # target: the unbroken model; else the hand attack


class OutOfTime(Exception):
    """A piece not in the cache, asked for after ``--stop-at``."""


class Cache:
    """Finished pieces as JSON files in ``folder``, one per key; written atomically (tmp + os.replace)."""

    def __init__(self, folder: Path, stop_at: float | None) -> None:
        self.folder, self.stop_at = folder, stop_at
        folder.mkdir(parents=True, exist_ok=True)

    def get(self, key: dict[str, Any], compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        text = json.dumps(key, sort_keys=True)
        key = json.loads(text)  # as it reads back (tuples become lists), to compare with the stored key
        digest = hashlib.sha256(text.encode()).hexdigest()[:12]
        name = f"{key['model']}-{key['break']}-{key['piece']}-n{key['n']}-{digest}"
        path = self.folder / f"{name}.json"
        if path.exists():
            stored = json.loads(path.read_text())
            if stored["key"] == key:  # a hash collision would show here
                print(f"  cached {name}: {stored['value']}", flush=True)
                return stored["value"]
        if self.stop_at is not None and time.time() > self.stop_at:
            raise OutOfTime(name)
        torch.manual_seed(0)  # each piece seeded alike, so one read from the cache equals one computed
        started = time.perf_counter()
        value = compute()
        value["seconds"] = round(time.perf_counter() - started, 1)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps({"key": key, "value": value}, indent=1))
        os.replace(tmp, path)
        print(f"  computed {name}: {value}", flush=True)
        return value


def breaks(model: nn.Module, sigma: float) -> dict[str, nn.Module]:
    return {"scale": Scaled(model, 1e4), "softmax": Softmaxed(model), "noise": Noisy(model, sigma),
            "quantise": nn.Sequential(Quantise(8), model), "front": nn.Sequential(Staircase(), model)}


def worst(report: dict) -> float:
    return 100 * report["worst_case"][-1]["robust_accuracy"]


@torch.no_grad()
def majority_right(model: nn.Module, x: torch.Tensor, y: torch.Tensor, votes: int) -> torch.Tensor:
    """Per point: correctly classified by the majority of ``votes`` forwards of the randomised ``model``."""
    return torch.stack([model(x).argmax(1) == y for _ in range(votes)]).sum(0) * 2 > votes


def eot_by_hand(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int, step: float,
                draws: int, votes: int) -> float:
    """PGD on the mean gradient of ``draws`` noisy forwards; a point is broken when the majority of ``votes``
    forwards misclassify it (the clean-correct points by the same vote)."""
    right = majority_right(model, x, y, votes)
    x_adv = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        loss = torch.stack([F.cross_entropy(model(x_adv), y) for _ in range(draws)]).sum()
        (g,) = torch.autograd.grad(loss, x_adv)
        x_adv = (torch.min(torch.max(x_adv.detach() + step * g.sign(), x - eps), x + eps)).clamp(0, 1)
    return 100 * float((right & majority_right(model, x_adv, y, votes)).float().mean())


def autoattack_class() -> type:
    """The official ``autoattack`` package's AutoAttack, else pyautoattack's (the adapter's preference)."""
    for name in ("autoattack", "pyautoattack"):
        try:
            return importlib.import_module(name).AutoAttack
        except ImportError:
            continue
    raise SystemExit("the APGD-EoT reference needs AutoAttack: pip install pyautoattack")


def apgd_eot_by_hand(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, votes: int) -> float:
    """AutoAttack's version for randomised defenses (APGD-CE, then APGD-DLR on the points left, EoT over 20
    draws), each point judged by the majority of ``votes`` forwards (the clean-correct points by the same
    vote) instead of AutoAttack's one forward."""
    model.eval()  # AutoAttack leaves the mode to the caller
    x, y = x.float().contiguous(), y.long().contiguous()
    adversary = autoattack_class()(model, norm="Linf", eps=eps, seed=0, version="rand", device=x.device)
    standing = majority_right(model, x, y, votes)
    for loss in ("ce", "dlr"):
        idx = standing.nonzero().flatten()
        if idx.numel() == 0:
            break
        adversary.apgd.loss, adversary.apgd.seed = loss, 0
        x_adv = adversary.apgd.perturb(x[idx].contiguous(), y[idx].contiguous())
        standing[idx] = majority_right(model, x_adv, y[idx], votes)
    return 100 * float(standing.float().mean())


class Model:
    """One checkpoint, its images and the pieces measured on it, each through the cache."""

    def __init__(self, which: str, n: int, cache: Cache) -> None:
        self.which, self.n, self.cache = which, n, cache
        self.eps, self.steps, self.step, self.sigma = SETTINGS[which]
        self.model, self.x, self.y = real_model_and_data(which, n, torch.device("cpu"))
        self.pgd = [("pgd", {"steps": self.steps, "step_size": self.step})]

    def piece(self, name: str, piece: str, compute: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
        key = {"version": VERSION, "model": self.which, "break": name, "piece": piece, "n": self.n,
               "settings": SETTINGS[self.which], "eot": [DRAWS, VOTES, EOT_STEPS, EOT_STEP], "autoattack": AUTOATTACK}
        try:
            return self.cache.get(key, compute)
        except OutOfTime:
            print(f"  not run (past --stop-at): {self.which} {name} {piece}", flush=True)
            return None

    def run(self, m: nn.Module, attacks: list, **kw: Any) -> dict:
        return evaluate(m, (self.x, self.y), attacks, [self.eps], progress=False, **kw)

    def references(self) -> tuple[dict | None, dict | None]:
        pgd = self.piece("unbroken", "pgd", lambda: {"robust": worst(self.run(self.model, self.pgd))})
        aa = self.piece("unbroken", "autoattack",
                        lambda: {"robust": worst(self.run(self.model, [(AUTOATTACK, {})]))})
        return pgd, aa

    def plain(self, name: str, broken: nn.Module) -> dict | None:
        def compute() -> dict[str, Any]:
            report = self.run(broken, self.pgd)
            return {"robust": worst(report),
                    "warned": sorted(c["name"] for c in report["checks"] if c["status"] == "warn")}
        return self.piece(name, "plain", compute)

    def adaptive(self, name: str, broken: nn.Module) -> dict | None:
        def compute() -> dict[str, Any]:
            report = self.run(broken, self.pgd, adaptive=True)
            return {"robust": worst(report), "verdict": report["adaptive"]["verdict"],
                    "remedies": sorted({r["remedy"] for r in report["adaptive"]["runs"] if r["broken"]})}
        return self.piece(name, "adaptive", compute)

    def by_hand(self, name: str, broken: nn.Module) -> dict[str, dict | None]:
        """The hand-written attacks for a break that changes decisions, by name ({} for the others)."""
        through = [("pgd", {"steps": 2 * self.steps, "step_size": self.step}), ("apgd", {"steps": 100})]
        front = {"quantise": Quantise(8), "front": Staircase()}
        if name in front:
            bpda = nn.Sequential(robustreg.BPDA(front[name]), self.model)
            return {"BPDA": self.piece(name, "bpda", lambda: {"robust": worst(self.run(bpda, through))})}
        if name != "noise":
            return {}
        return {
            "APGD-EoT": self.piece(name, "apgd-eot", lambda: {"robust": apgd_eot_by_hand(
                broken, self.x, self.y, self.eps, VOTES)}),
            "PGD-EoT": self.piece(name, "pgd-eot", lambda: {"robust": eot_by_hand(
                broken, self.x, self.y, self.eps, EOT_STEPS, EOT_STEP * self.eps, DRAWS, VOTES)}),
        }


def pct(piece: dict | None) -> str:
    return "not run" if piece is None else f"{piece['robust']:.1f}"


def hand_cell(hand: dict[str, dict | None]) -> tuple[str, float | None]:
    """The "by hand" cell and the worst number of the hand attacks (None if one did not run)."""
    if not hand:
        return "-", None
    done = [p["robust"] for p in hand.values() if p is not None]
    best = min(done) if len(done) == len(hand) else None
    cell = pct(None) if best is None else f"{best:.1f}"
    if len(hand) > 1:
        cell += " (" + ", ".join(f"{k} {pct(p)}" for k, p in hand.items()) + ")"
    return cell, best


def one_row(m: Model, name: str, broken: nn.Module, unbroken: float | None,
            refs: tuple[dict | None, dict | None], rules: dict[str, list[str]]) -> list[object]:
    plain = m.plain(name, broken)
    adaptive = m.adaptive(name, broken)
    if adaptive is not None:
        rules.setdefault(adaptive["verdict"], []).append(f"{m.which} {name}")
    hand, hand_best = hand_cell(m.by_hand(name, broken))
    target = unbroken if name in DECISIONS_KEPT else hand_best
    gap = None if target is None or adaptive is None else adaptive["robust"] - target
    return [m.which, name, pct(refs[0]), pct(refs[1]), pct(plain), pct(adaptive), hand,
            "-" if target is None else f"{target:.1f}", "-" if gap is None else f"{gap:+.1f}",
            "-" if gap is None else ("yes" if abs(gap) <= 3 else "NO"),
            ", ".join(plain["warned"]) or "-" if plain else "not run",
            ", ".join(adaptive["remedies"]) or "-" if adaptive else "not run",
            f"{adaptive['seconds']:.0f}" if adaptive else "-"]


def one_model(which: str, n: int, chosen: list[str], cache: Cache,
              rules: dict[str, list[str]]) -> list[list[object]]:
    m = Model(which, n, cache)
    refs = m.references()
    unbroken = None if None in refs else min(r["robust"] for r in refs if r is not None)
    rows = []
    for name, broken in breaks(m.model, m.sigma).items():
        if name in chosen:
            rows.append(one_row(m, name, broken, unbroken, refs, rules))
            print(" | ".join(str(v) for v in rows[-1]), flush=True)
    return rows


def stop_time(text: str | None) -> float | None:
    """``HH:MM`` (UTC, today) as a time stamp; None for no limit."""
    if text is None:
        return None
    try:
        hour, minute = (int(v) for v in text.split(":"))
        when = datetime.datetime.now(datetime.timezone.utc).replace(hour=hour, minute=minute, second=0)
    except ValueError:
        raise SystemExit(f"--stop-at must be HH:MM (UTC), got {text!r}") from None
    return when.timestamp()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=500, help="images per model (default 500)")
    parser.add_argument("--models", default="mnist,cifar", help="mnist, cifar or both (default)")
    parser.add_argument("--breaks", default="scale,softmax,noise,quantise,front",
                        help="which breaks (default all; empty: the unbroken references only)")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "robustreg-adaptive-cache",
                        help="folder of finished pieces, reused by a rerun (default under $TMPDIR)")
    parser.add_argument("--stop-at", help="HH:MM UTC: start no piece after it (default: no limit)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cache = Cache(args.cache, stop_time(args.stop_at))
    header = ["model", "break", "unbroken PGD", "unbroken AA", "plain evaluate", "--adaptive", "by hand",
              "target", "adaptive - target", "within 3", "checks that warned", "remedies that broke points",
              "adaptive s"]
    chosen = [b.strip() for b in args.breaks.split(",") if b.strip()]
    rules: dict[str, list[str]] = {}
    rows = [row for which in args.models.split(",") for row in one_model(which.strip(), args.n, chosen, cache, rules)]
    verdicts = "; ".join(f"{', '.join(where)}: {rule}" for rule, where in rules.items())
    body = (f"n = {args.n} images per model, robust accuracy in %, one torch thread. Unbroken: PGD "
            f"(mnist {SETTINGS['mnist'][1]} steps, cifar {SETTINGS['cifar'][1]}) and standard AutoAttack "
            f"({AUTOATTACK}). Target: the lower of the two for scale, softmax and front (decisions unchanged), "
            "the hand-written attack for quantise (PGD-2k and APGD-100 through BPDA, the worse for the model) "
            "and noise (the worse of PGD-EoT, 100 steps of eps/10 on the mean gradient of 20 draws, and "
            "AutoAttack's rand version, APGD-CE and APGD-DLR with EoT over 20 draws; each point judged by a "
            "9-draw majority, the clean points by the same vote).\n\n"
            f"The verdict rule of --adaptive (report.json `adaptive.verdict`): {verdicts or '-'}.\n\n"
            + markdown_table(header, rows))
    print(write_report("adaptive", "--adaptive on broken real checkpoints", body))


if __name__ == "__main__":
    main()
