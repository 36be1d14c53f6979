"""mmext names that shadow an mmdet / mmseg model name are written with a scope.

mmext registers ``ResNet``, ``ResNetV1c``, ``ResNetV1d``, ``ResNeXt`` and
``DynamicConv``, which mmdet or mmseg register too. In an mmdet / mmseg config
an unscoped ``type='ResNet'`` builds the library's class, so a config that means
mmext's host and forgets ``mmext.`` silently gets another network, or fails far
from the cause. The rule, checked on every shipped config:

1. the config's own text never writes a shadowed name without a scope: it
   writes ``mmext.ResNet`` for mmext's class and ``mmdet.ResNeXt`` /
   ``mmseg.ResNeXt`` for the library's. Text inherited from an upstream
   ``_base_`` (``mmdet::...``) is upstream's and is not checked;
2. a dict that resolves to the library's class of a shadowed name carries no
   argument only mmext's class takes (``block_conv_cfg`` on an inherited
   ``ResNet``): there mmext's class was meant.
"""
import ast
import glob
import inspect
import os.path as osp
import textwrap

import pytest
from conftest import CONFIGS

from mmext.utils.embedded import walk_dicts

LIBRARIES = ('mmdet', 'mmseg')


def _registries():
    import mmdet.utils
    import mmseg.utils
    mmdet.utils.register_all_modules(init_default_scope=False)
    mmseg.utils.register_all_modules(init_default_scope=False)
    import mmext.models  # noqa: F401  (fills mmext's registry)
    from mmdet.registry import MODELS as DET_MODELS
    from mmseg.registry import MODELS as SEG_MODELS

    from mmext.registry import MODELS
    return MODELS, {'mmdet': DET_MODELS, 'mmseg': SEG_MODELS}


def shadowed_names():
    """Names in mmext's MODELS registry that mmdet's or mmseg's registers too."""
    ours, libs = _registries()
    return sorted(set(ours.module_dict) & set().union(*(r.module_dict for r in libs.values())))


def accepted_args(cls):
    """Named ``__init__`` arguments of ``cls``, following ``**kwargs`` up the MRO
    (``ResNetV1c(**kwargs)`` takes ``ResNet``'s)."""
    names = set()
    for klass in cls.__mro__:
        if '__init__' not in vars(klass):
            continue
        params = inspect.signature(vars(klass)['__init__']).parameters.values()
        names |= {p.name for p in params
                  if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and p.name != 'self'}
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            break
    return names


def mmext_only_args():
    """Per shadowed name and library: arguments mmext's class takes and the
    library's does not."""
    ours, libs = _registries()
    only = {}
    for name in shadowed_names():
        mine = accepted_args(ours.module_dict[name])
        for lib, registry in libs.items():
            if name in registry.module_dict:
                only[name, lib] = mine - accepted_args(registry.module_dict[name])
    return only


def _own_type_names(tree):
    """(line, type string) of every ``type=...`` keyword and ``'type': ...``
    entry written in a config's own text."""
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == 'type' \
                and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            yield node.value.lineno, node.value.value
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if isinstance(key, ast.Constant) and key.value == 'type' \
                        and isinstance(value, ast.Constant) and isinstance(value.value, str):
                    yield value.lineno, value.value


def _own_arg_names(tree):
    names = {n.arg for n in ast.walk(tree) if isinstance(n, ast.keyword) and n.arg}
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            names |= {k.value for k in node.keys if isinstance(k, ast.Constant)}
    return names


def scope_violations(path, shadowed, only):
    """Breaches of the module docstring's two rules in the config at ``path``,
    one line each (empty when it follows them)."""
    with open(path) as f:
        tree = ast.parse(f.read(), filename=path)
    found = [f'{path}:{line}: write {name!r} with its scope: mmext.{name} for mmext\'s class, '
             f'mmdet.{name} / mmseg.{name} for the library\'s'
             for line, name in _own_type_names(tree) if name in shadowed]
    # Rule 2 needs the resolved config; only a config whose own text names a
    # shadowed type or an mmext-only argument can break it.
    mentioned = {t.split('.')[-1] for _, t in _own_type_names(tree)} & set(shadowed)
    if not mentioned and not _own_arg_names(tree) & set().union(*only.values()):
        return found
    from mmengine.config import Config
    cfg = Config.fromfile(path)
    default_scope = cfg.get('default_scope')
    for d in walk_dicts(cfg.to_dict()):
        kind = d.get('type')
        if not isinstance(kind, str):
            continue
        scope, _, name = kind.rpartition('.')
        scope = scope or d.get('_scope_') or default_scope
        extra = set(d) & only.get((name, scope), set())
        if extra:
            found.append(f'{path}: {kind!r} builds {scope}\'s {name}, but {sorted(extra)} are '
                         f'arguments of mmext.{name} only')
    return found


SHIPPED = sorted(p for p in glob.glob(osp.join(CONFIGS, '**', '*.py'), recursive=True)
                 if '_base_' not in osp.relpath(p, CONFIGS).split(osp.sep))


@pytest.fixture(scope='module')
def rules():
    import mmext  # noqa: F401  (mmdet:: / mmseg:: bases on this stack)
    return shadowed_names(), mmext_only_args()


def test_the_shadowed_names(rules):
    shadowed, only = rules
    assert {'ResNet', 'ResNetV1c', 'ResNetV1d', 'ResNeXt', 'DynamicConv'} <= set(shadowed)
    assert 'block_conv_cfg' in only['ResNet', 'mmdet'] and 'num_kernels' in only['DynamicConv',
                                                                                 'mmdet']


def test_every_shipped_config_scopes_the_shadowed_names(rules):
    assert len(SHIPPED) > 100
    found = [v for p in SHIPPED for v in scope_violations(p, *rules)]
    assert not found, '\n'.join(found)


R50 = osp.join(CONFIGS, 'resnet', 'retinanet_r50_fpn_1x_coco.py')


@pytest.mark.parametrize('body,expected', [
    # mmext's host meant, the scope forgotten: rule 1 (own text) and rule 2
    ("model = dict(backbone=dict(type='ResNet',\n"
     "    block_conv_cfg=dict(type='mmext.DynamicConv', num_kernels=4)))",
     [":3: write 'ResNet'", "['block_conv_cfg'] are arguments of mmext.ResNet only"]),
    # no type written, upstream's ResNet inherited with an mmext-only argument: rule 2
    ("model = dict(backbone=dict(block_conv_cfg=dict(type='mmext.DynamicConv')))",
     ["'ResNet' builds mmdet's ResNet"]),
    # an unscoped conv inside mmext's host
    ("model = dict(backbone=dict(type='mmext.ResNet',\n"
     "    block_conv_cfg=dict(type='DynamicConv', num_kernels=4)))",
     [":4: write 'DynamicConv'", "arguments of mmext.DynamicConv only"]),
    # upstream's class named with its scope, mmext's with its own: fine
    ("model = dict(backbone=dict(type='mmdet.ResNeXt', groups=32, base_width=4))", []),
    ("model = dict(backbone=dict(type='mmext.ResNet',\n"
     "    block_conv_cfg=dict(type='mmext.DynamicConv', num_kernels=4)))", []),
    # the upstream base alone writes 'ResNet' unscoped: upstream's text
    ('', []),
])
def test_a_config_that_breaks_the_rule_is_named(rules, tmp_path, body, expected):
    path = tmp_path / 'cfg.py'
    path.write_text(textwrap.dedent(f"""\
        # a user config
        _base_ = {R50!r}
        """) + body + '\n')
    found = scope_violations(str(path), *rules)
    assert len(found) == len(expected), found
    for text, message in zip(expected, found):
        assert text in message, (text, message)
