"""The documented differences between robustreg's implementations and the papers, one sentence each, for the
protocol section of every report that they apply to (issue 24).

:func:`deviation_lines` renders the keys a claim names.  Three of them changed default in issue 24 (the
released code of paper 000 is followed now); a run made before that recorded no ``fidelity`` entry and
used the earlier forms, which :func:`fidelity` reports for it, so a re-rendered report says what its run did.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CURRENT", "DEVIATIONS", "LEGACY", "deviation_lines", "fidelity"]

# what a run records (numbers["fidelity"]); LEGACY: what runs made before issue 24 used
CURRENT = {"iter_ll_target": "clean", "eps_distribution": "clipped", "cascade_store": "every eps, clipped-normal draw"}
LEGACY = {"iter_ll_target": "every-step", "eps_distribution": "truncated",
          "cascade_store": "one uniform eps per image, uniform draw"}

DEVIATIONS = {
    "pgd-first-success": "PGD, PGD-CW, PGD-DLR and SI-PGD return each sample's first successful iterate, not the last "
                         "one of paper 004's eq. 3 (it can only lower accuracy; measured 0.0 points on resnet4b)",
    "pgd-cw-logits": "PGD-CW's margin max_{i!=y} z_i - z_y is on the logits, as Carlini & Wagner define it; paper "
                     "004's eq. 5 writes it on f, the softmax of its eq. 4 (the same sign, other gradients)",
    "si-start": "TRADES-SI and MART-SI start their inner SI-PGD from x + 0.001 N(0, I) (their bases' released code); "
                "SI-PGD as eq. 8 writes it starts from x + U(-eps, eps), as AT-SI's and ALP-SI's do",
    "iter-ll-target": "iter_ll's least-likely target: {iter_ll_target}",
    "eps-draw": "training eps ~ |N(0, max_e/2)| kept in [0, max_e] by {eps_distribution}",
    "cascade-store": "cascade store: {cascade_store}",
}
_EXPLAIN = {
    "iter_ll_target": {"clean": "fixed at the clean image's least-likely class (the authors' released code, "
                                "utils.py get_adver_image; Kurakin et al.)",
                       "every-step": "re-picked at every iterate (paper 000's text; the run predates issue 24, which "
                                     "made the released code's fixed target the default: on resnet4b at 16/255 "
                                     "the fixed target leaves 24.7% correct, the re-picked one 54.3%)"},
    "eps_distribution": {"clipped": "clipping (the released code's get_intensity)",
                         "truncated": "resampling (Kurakin et al.'s truncated normal; the run predates issue 24, "
                                      "which made the released code's clipping the default)"},
    "cascade_store": {"every eps, clipped-normal draw": "every image at every eps, each use drawing its eps from "
                                                        "clip(|N(0, max_e/2)|) floored to 1..max_e (the released "
                                                        "code's get_batch; mean 6.73 of 16)",
                      "one uniform eps per image, uniform draw": "one eps per image, uniform on the range, drawn "
                                                                 "uniformly (the run predates issue 24; the released "
                                                                 "code stores every eps and draws mean 6.73 of 16, "
                                                                 "not 8.5)"},
}


def fidelity(numbers: dict[str, Any] | None) -> dict[str, str]:
    """The forms a run used: its recorded ``fidelity``, or :data:`LEGACY` for a run made before issue 24."""
    if numbers is None:
        return dict(CURRENT)
    return dict(numbers.get("fidelity", LEGACY))


def deviation_lines(keys: list[str], used: dict[str, str] | None = None) -> str:
    """Markdown bullets for ``keys`` of :data:`DEVIATIONS`, filled with the forms the run ``used``."""
    forms = {k: _EXPLAIN[k][v] for k, v in (used or CURRENT).items()}

    def fill(text: str) -> str:  # not str.format: the texts hold braces of their own (max_{i!=y})
        for name, form in forms.items():
            text = text.replace("{" + name + "}", form)
        return text

    return "\n".join(f"- {fill(DEVIATIONS[k])};" for k in keys)
