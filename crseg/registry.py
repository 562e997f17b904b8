"""Registries of the ``crseg`` scope.

Every registry is a child of mmsegmentation's, so a config under
``default_scope='crseg'`` finds crseg's own components first and falls back
to mmseg's (and, through mmseg, mmengine's). Components of other OpenMMLab
projects are reached with a scope prefix, e.g. ``type='mmdet.DiceLoss'``.
``locations`` lets the registry import crseg's modules lazily the first time
something is built from it; they also name mmseg's modules, because a child
registry only looks into its parent's already-imported components.
"""
from mmengine.registry import Registry
from mmseg.registry import DATA_SAMPLERS as MMSEG_DATA_SAMPLERS
from mmseg.registry import DATASETS as MMSEG_DATASETS
from mmseg.registry import EVALUATOR as MMSEG_EVALUATOR
from mmseg.registry import HOOKS as MMSEG_HOOKS
from mmseg.registry import LOG_PROCESSORS as MMSEG_LOG_PROCESSORS
from mmseg.registry import LOOPS as MMSEG_LOOPS
from mmseg.registry import METRICS as MMSEG_METRICS
from mmseg.registry import MODEL_WRAPPERS as MMSEG_MODEL_WRAPPERS
from mmseg.registry import MODELS as MMSEG_MODELS
from mmseg.registry import OPTIM_WRAPPER_CONSTRUCTORS as MMSEG_OPTIM_WRAPPER_CONSTRUCTORS
from mmseg.registry import OPTIM_WRAPPERS as MMSEG_OPTIM_WRAPPERS
from mmseg.registry import OPTIMIZERS as MMSEG_OPTIMIZERS
from mmseg.registry import PARAM_SCHEDULERS as MMSEG_PARAM_SCHEDULERS
from mmseg.registry import RUNNERS as MMSEG_RUNNERS
from mmseg.registry import TASK_UTILS as MMSEG_TASK_UTILS
from mmseg.registry import TRANSFORMS as MMSEG_TRANSFORMS
from mmseg.registry import VISBACKENDS as MMSEG_VISBACKENDS
from mmseg.registry import VISUALIZERS as MMSEG_VISUALIZERS
from mmseg.registry import WEIGHT_INITIALIZERS as MMSEG_WEIGHT_INITIALIZERS

_MODEL_LOCATIONS = ['crseg.models', 'crseg.glcot', 'mmseg.models']

RUNNERS = Registry('runner', parent=MMSEG_RUNNERS, scope='crseg')
LOOPS = Registry('loop', parent=MMSEG_LOOPS, scope='crseg',
                 locations=['crseg.engine'])
HOOKS = Registry('hook', parent=MMSEG_HOOKS, scope='crseg',
                 locations=['crseg.engine', 'mmseg.engine.hooks'])
DATASETS = Registry('dataset', parent=MMSEG_DATASETS, scope='crseg',
                    locations=['crseg.datasets', 'mmseg.datasets'])
DATA_SAMPLERS = Registry('data sampler', parent=MMSEG_DATA_SAMPLERS,
                         scope='crseg')
TRANSFORMS = Registry('transform', parent=MMSEG_TRANSFORMS, scope='crseg',
                      locations=['crseg.datasets.transforms', 'mmseg.datasets.transforms'])
MODELS = Registry('model', parent=MMSEG_MODELS, scope='crseg',
                  locations=_MODEL_LOCATIONS)
MODEL_WRAPPERS = Registry('model_wrapper', parent=MMSEG_MODEL_WRAPPERS,
                          scope='crseg', locations=_MODEL_LOCATIONS)
WEIGHT_INITIALIZERS = Registry('weight initializer',
                               parent=MMSEG_WEIGHT_INITIALIZERS, scope='crseg')
OPTIMIZERS = Registry('optimizer', parent=MMSEG_OPTIMIZERS, scope='crseg',
                      locations=['mmseg.engine.optimizers'])
OPTIM_WRAPPERS = Registry('optim_wrapper', parent=MMSEG_OPTIM_WRAPPERS,
                          scope='crseg', locations=['mmseg.engine.optimizers'])
OPTIM_WRAPPER_CONSTRUCTORS = Registry(
    'optimizer wrapper constructor', parent=MMSEG_OPTIM_WRAPPER_CONSTRUCTORS,
    scope='crseg', locations=['mmseg.engine.optimizers'])
PARAM_SCHEDULERS = Registry('parameter scheduler',
                            parent=MMSEG_PARAM_SCHEDULERS, scope='crseg',
                            locations=['mmseg.engine.schedulers'])
METRICS = Registry('metric', parent=MMSEG_METRICS, scope='crseg',
                   locations=['crseg.evaluation', 'mmseg.evaluation'])
EVALUATOR = Registry('evaluator', parent=MMSEG_EVALUATOR, scope='crseg',
                     locations=['crseg.evaluation', 'mmseg.evaluation'])
TASK_UTILS = Registry('task util', parent=MMSEG_TASK_UTILS, scope='crseg',
                      locations=_MODEL_LOCATIONS)
VISUALIZERS = Registry('visualizer', parent=MMSEG_VISUALIZERS, scope='crseg',
                       locations=['crseg.visualization', 'mmseg.visualization'])
VISBACKENDS = Registry('vis_backend', parent=MMSEG_VISBACKENDS, scope='crseg',
                       locations=['mmseg.visualization'])
LOG_PROCESSORS = Registry('log_processor', parent=MMSEG_LOG_PROCESSORS,
                          scope='crseg')
