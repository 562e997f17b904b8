from .time_budget_hook import TimeBudgetHook
from .trainable_checkpoint_hook import TrainableCheckpointHook

__all__ = ['TimeBudgetHook', 'TrainableCheckpointHook']
