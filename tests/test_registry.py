"""The ``mmext`` scope is reachable from mmdet and mmseg configs."""
import pytest
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.registry import HOOKS as ROOT_HOOKS
from mmengine.registry import MODELS as ROOT_MODELS
from mmengine.registry import Registry

import mmext.registry
from mmext.engine import TrainingCurveHook


def test_registries_are_children_of_the_mmengine_roots():
    assert mmext.registry.MODELS.scope == 'mmext'
    assert mmext.registry.MODELS.parent is ROOT_MODELS
    assert ROOT_HOOKS.children['mmext'] is mmext.registry.HOOKS


def test_only_registries_that_something_registers_into():
    # Datasets and transforms are mmdet's and mmseg's; an empty mmext
    # registry beside them would only be a second place to look.
    registries = {k for k, v in vars(mmext.registry).items()
                  if isinstance(v, Registry) and v.scope == 'mmext'}
    assert registries == {'MODELS', 'HOOKS'}
    for name in registries:
        registry = getattr(mmext.registry, name)
        registry.import_from_location()
        assert len(registry) > 0, name


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
def test_build_mmext_component_from_library_scope(scope):
    if scope == 'mmdet':
        from mmdet.registry import HOOKS
        from mmdet.utils import register_all_modules
    else:
        from mmseg.registry import HOOKS
        from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    cfg = Config(dict(default_scope=scope, hook=dict(type='mmext.TrainingCurveHook', interval=3)))
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        hook = HOOKS.build(cfg.hook)
    assert isinstance(hook, TrainingCurveHook)
    assert hook.interval == 3
    # The library's own components still resolve beside mmext's.
    with DefaultScope.overwrite_default_scope(scope):
        assert HOOKS.get('CheckpointHook') is not None


def test_custom_imports_config(tmp_path):
    cfg_file = tmp_path / 'cfg.py'
    cfg_file.write_text("default_scope = 'mmdet'\n"
                        "custom_imports = dict(imports=['mmext'], allow_failed_imports=False)\n"
                        "hook = dict(type='mmext.TrainingCurveHook', interval=5)\n")
    cfg = Config.fromfile(str(cfg_file))
    from mmdet.registry import HOOKS
    with DefaultScope.overwrite_default_scope('mmdet'):
        hook = HOOKS.build(cfg.hook)
    assert isinstance(hook, TrainingCurveHook) and hook.interval == 5


def test_unknown_mmext_type_is_a_key_error():
    from mmdet.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmdet'):
        with pytest.raises(KeyError, match='NoSuchNet'):
            MODELS.build(dict(type='mmext.NoSuchNet'))
