from .checkpoint_hook import CRSegCheckpointHook, check_checkpoint_hook_cfg
from .time_budget_hook import TimeBudgetHook
from .visualization_hook import SegVisualizationHook

__all__ = ['CRSegCheckpointHook', 'SegVisualizationHook', 'TimeBudgetHook',
           'check_checkpoint_hook_cfg']
