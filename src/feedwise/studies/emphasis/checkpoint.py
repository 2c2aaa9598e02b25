"""An engine callback of the emphasis study: keep the model's weights at its best validation error."""

from __future__ import annotations

import copy
import math

from feedwise.engine import Trainer


class BestCheckpoint:
    """Engine callback: keep a copy of the model's state_dict at its best validation error."""

    def __init__(self):
        self.best_error = math.inf
        self.best_step = None
        self.state = None

    def __call__(self, trainer: Trainer, row: dict):
        if row["val_error"] < self.best_error:
            self.best_error = row["val_error"]
            self.best_step = row["step"]
            self.state = copy.deepcopy(trainer.model.state_dict())
        return None
