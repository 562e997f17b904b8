"""Scope set-up: import crseg's modules and make ``crseg`` the default scope.

It imports every runtime package, so it sits above them (not in ``crseg.utils``, which
imports nothing of crseg outside itself).
"""
import datetime
import warnings

from mmengine import DefaultScope


def register_all_modules(init_default_scope: bool = True) -> None:
    """Import every crseg module so that its components are registered.

    Registries also import lazily through their ``locations``; this is for
    scripts that want everything up front. With ``init_default_scope`` the
    current default scope becomes ``crseg`` (a fresh, uniquely named instance
    if another scope is current, as mmseg does).
    """
    import crseg.datasets  # noqa: F401
    import crseg.engine  # noqa: F401
    import crseg.evaluation  # noqa: F401
    import crseg.glcot  # noqa: F401
    import crseg.models  # noqa: F401
    import crseg.visualization  # noqa: F401
    from crseg.utils.checkpoint_compat import allow_mmengine_checkpoint_globals
    allow_mmengine_checkpoint_globals()

    if not init_default_scope:
        return
    current = DefaultScope.get_current_instance()
    if current is None or not DefaultScope.check_instance_created('crseg'):
        if current is not None and current.scope_name != 'crseg':
            warnings.warn(f'The current default scope "{current.scope_name}" '
                          'is not "crseg"; a new "crseg" scope is created.')
            name = f'crseg-{datetime.datetime.now()}'
            DefaultScope.get_instance(name, scope_name='crseg')
        else:
            DefaultScope.get_instance('crseg', scope_name='crseg')
