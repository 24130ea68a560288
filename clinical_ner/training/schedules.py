"""Learning-rate schedules as LambdaLR multipliers."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def warmup_cosine(
    optimizer: Optimizer, total_steps: int, warmup_ratio: float, min_lr_ratio: float
) -> LambdaLR:
    """Linear warmup over `warmup_ratio` of the steps, then cosine decay to `min_lr_ratio` x peak."""
    warmup = int(total_steps * warmup_ratio)

    def multiplier(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, multiplier)
