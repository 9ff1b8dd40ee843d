"""Stop a diverged training run before it saves or predicts anything.

Trainer itself reports `loss: nan` and goes on: it saves checkpoints and a final model with NaN weights, and a loss
of 6e10 passes without a word. `DivergenceGuard` checks the trainable weights after every optimizer step (before
Trainer's save of that step) and every logged loss; on a problem it raises `UserError`, so the run ends with one
clear line and the checkpoints already written (all from before the problem) stay as they were.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from transformers import TrainerCallback

from arena_preference.run_folder import UserError

# A 3-way log loss starts near log(3) = 1.1; a mean above this means logits in the hundreds on wrong answers.
MAX_LOSS = 100.0


class DivergenceGuard(TrainerCallback):
    """Raise `UserError` when a trainable weight is NaN or infinite after a step, or a logged training loss is not
    finite or above `MAX_LOSS`."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        with torch.no_grad():
            bad = [name for name, p in self.trainable if not bool(torch.isfinite(p).all())]
        if bad:
            self._stop(state, f"non-finite weights after the optimizer step ({', '.join(bad[:3])})", args)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None,
               **kwargs: Any) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not (math.isfinite(loss) and loss <= MAX_LOSS):
            self._stop(state, f"training loss {loss:g}", args)

    def _stop(self, state: Any, what: str, args: Any) -> None:
        raise UserError(f"training diverged at step {state.global_step}: {what}; stopped before saving it. "
                        f"Lower --learning_rate (now {args.learning_rate:g}); checkpoints written before this step "
                        "are unchanged")


__all__ = ["DivergenceGuard", "MAX_LOSS"]
