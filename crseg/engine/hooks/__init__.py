from .checkpoint_hook import CRSegCheckpointHook
from .time_budget_hook import TimeBudgetHook

__all__ = ['CRSegCheckpointHook', 'TimeBudgetHook']
