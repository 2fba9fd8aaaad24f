"""A model with more outputs than the data has classes (an ImageNet model's 1000 outputs on CIFAR-10).

Allowed, never silent: :func:`robustreg.evaluate` warns in one line before any work, and the report's
``more-outputs-than-classes`` check records it.  Predictions and the attacks' losses range over every
output, so a point classified as one of the extra classes counts as misclassified, and an attack can win by
pushing it there: the numbers are those of a K-way classifier, not of one over the data's classes.
"""

from __future__ import annotations

from .context import CheckContext, Outcome

__all__ = ["check_more_outputs_than_classes", "more_outputs_message"]


def more_outputs_message(outputs: int, num_classes: int | None) -> str | None:
    """What to say when the model has more ``outputs`` than the data's ``num_classes``; None otherwise."""
    if num_classes is None or outputs <= num_classes:
        return None
    return (f"the model has {outputs} outputs but the data has {num_classes} classes: predictions and attacks "
            f"range over all {outputs} outputs, so a point classified as one of classes {num_classes}.."
            f"{outputs - 1} counts as wrong (is the model's head the data's? a model pretrained on other data "
            f"needs its head replaced)")


def check_more_outputs_than_classes(ctx: CheckContext) -> Outcome:
    outputs = int(ctx.clean_logits.shape[1])
    if ctx.num_classes is None:
        seen = int(ctx.y.max()) + 1 if ctx.y.numel() else 0
        if seen == outputs:  # the labels themselves reach the last output: nothing extra
            return "ok", f"the model's {outputs} outputs are the classes its labels reach (0..{outputs - 1})"
        return "skipped", (f"the data does not say how many classes it has and its labels reach {seen - 1} of the "
                           f"model's {outputs} outputs (in Python, data_info={{'num_classes': C}} tells it)")
    message = more_outputs_message(outputs, ctx.num_classes)
    if message is not None:
        return "warn", message
    return "ok", f"the model's {outputs} outputs are the data's {ctx.num_classes} classes"
