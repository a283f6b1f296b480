"""The one rule for "same classes": same count, same names in the same order, letter case aside.

Letter case is ignored because the official lists themselves disagree on it (UCF101's
``HandstandPushups`` class, ``v_HandStandPushups`` files), so two runs on the same dataset must
still match.
"""

from utils.errors import UserError


def class_difference(a: list[str], b: list[str]) -> str | None:
    """None when ``a`` and ``b`` are the same class list, else what differs, in a few words."""
    if len(a) != len(b):
        return f"{len(a)} vs {len(b)} classes"
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        if x.lower() != y.lower():
            return f"class {i + 1}: {x!r} vs {y!r}"
    return None


def check_same_classes(a: list[str], b: list[str], what_a, what_b, hint: str) -> None:
    """Raise a one-line UserError naming both sources when their class lists differ."""
    difference = class_difference(a, b)
    if difference is not None:
        raise UserError(f"{what_a} and {what_b} have different classes ({difference}); {hint}")
