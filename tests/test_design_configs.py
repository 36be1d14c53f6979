"""Every design config builds, trains a few iterations and evaluates on the
embedded data.

The backbone is built exactly as the config says (the design under test, at
full width); only the image size, the iteration count and the width of the
necks and heads are shrunk so that the whole set fits in CI on two cores.
"""
import ast
import glob
import inspect
import math
import os.path as osp

import pytest
from conftest import CONFIGS
from mmengine.runner import Runner

from mmext.utils.config import load_config, register_library
from mmext.utils.embedded import to_embedded, walk_dicts

# The baselines are exercised by test_pipelines.py; every other folder is a design.
DESIGN_CONFIGS = sorted(
    p for p in glob.glob(osp.join(CONFIGS, '*', '*.py'))
    if osp.basename(osp.dirname(p)) not in ('_base_', 'resnet'))

HEAD_WIDTH = 32


def _shrink_heads(model):
    """Neck / head widths of 256 (and the R-CNN FC width) down to a few
    channels; the backbone, and the head inputs that read it, are untouched."""
    for name, part in model.items():
        if name == 'backbone' or not isinstance(part, dict):
            continue
        if name in ('decode_head', 'auxiliary_head'):
            part['channels'] = HEAD_WIDTH  # mmseg heads read backbone stages directly
            continue
        for d in walk_dicts(part):
            for key in ('in_channels', 'out_channels', 'feat_channels', 'conv_out_channels'):
                if d.get(key) == 256:
                    d[key] = HEAD_WIDTH
            if 'fc_out_channels' in d:
                d['fc_out_channels'] = 2 * HEAD_WIDTH


def design_cfg(path, data_root, work_dir):
    full = load_config(path)
    register_library(full)
    _check_segmentor_pretrained(full)
    cfg = to_embedded(full, preset='smoke', data_root=data_root,
                      cfg_options=dict(train_cfg=dict(max_iters=2)))
    _shrink_heads(cfg.model)
    cfg.train_dataloader.dataset.indices = 4
    cfg.val_dataloader.dataset.indices = 2
    cfg.val_evaluator = cfg.test_evaluator
    # Evaluate once, after training; no checkpoint of a full-width backbone.
    cfg.train_cfg.val_interval = 10**6
    cfg.default_hooks.checkpoint = None
    cfg.work_dir = str(work_dir)
    cfg.experiment_name = f'{osp.basename(path)}_{id(cfg)}'
    # Its own visualizer, as in conftest.smoke_cfg (the bases name it
    # 'visualizer' and mmengine would hand back the first run's).
    cfg.visualizer.pop('name', None)
    # The loss / metric curve (tests/test_pipelines.py checks it) redraws a
    # figure at every validation: a quarter of a 2-iteration run.
    cfg.custom_hooks = [h for h in cfg.custom_hooks if 'TrainingCurveHook' not in h['type']]
    return cfg


def _check_segmentor_pretrained(cfg):
    """mmseg's EncoderDecoder hands ``model.pretrained`` to the backbone as an
    argument: a backbone that does not take it fails to build at full scale
    (the embedded runs drop ``pretrained``, so training would not notice)."""
    pretrained = cfg.model.get('pretrained')
    if not pretrained:
        return
    from mmengine.registry import DefaultScope
    from mmseg.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmseg'):
        cls = MODELS.get(cfg.model.backbone.type)
    params = inspect.signature(cls).parameters.values()
    assert any(p.name == 'pretrained' or p.kind == p.VAR_KEYWORD for p in params), (
        f'model.pretrained={pretrained!r} goes to {cls.__name__}, which takes no `pretrained`: '
        'set model.pretrained=None and load weights through backbone.init_cfg')


UPERNET_RECIPE = osp.join(CONFIGS, '_base_', 'upernet_adamw-poly_8xb2-160k_ade20k-512x512.py')


def _base_chain(path):
    """The config files ``path`` inherits from inside this repository,
    nearest first (``pkg::`` bases end the chain)."""
    chain = []
    while True:
        with open(path) as f:
            tree = ast.parse(f.read())
        bases = [ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign)
                 and any(getattr(t, 'id', None) == '_base_' for t in n.targets)]
        bases = [b for group in bases for b in ([group] if isinstance(group, str) else group)]
        local = [b for b in bases if '::' not in b]
        if not local:
            return chain
        path = osp.normpath(osp.join(osp.dirname(path), local[0]))
        chain.append(path)


def test_upernet_designs_take_the_adamw_recipe_from_its_base():
    """An UperNet design on AdamW + poly inherits the recipe from
    configs/_base_/ and writes only what its own recipe changes."""
    upernets = [p for p in DESIGN_CONFIGS if osp.basename(p).startswith('upernet_')]
    on_recipe = [p for p in upernets if UPERNET_RECIPE in _base_chain(p)]
    assert len(on_recipe) >= 10
    for path in upernets:
        with open(path) as f:
            text = f.read()
        if "'AdamW'" in text or "'PolyLR'" in text:
            assert path in on_recipe, f'{path} restates the UperNet AdamW + poly recipe'


def test_every_design_folder_has_the_three_pipelines():
    folders = {osp.basename(osp.dirname(p)) for p in DESIGN_CONFIGS}
    assert len(folders) >= 10
    for folder in folders:
        names = [osp.basename(p) for p in DESIGN_CONFIGS if f'/{folder}/' in p]
        for prefix in ('retinanet_', 'mask-rcnn_', 'upernet_'):
            assert any(n.startswith(prefix) for n in names), (folder, prefix)


@pytest.mark.parametrize('path', DESIGN_CONFIGS,
                         ids=[osp.relpath(p, CONFIGS) for p in DESIGN_CONFIGS])
def test_design_config_trains_and_evaluates(path, embedded_root, tmp_path):
    cfg = design_cfg(path, embedded_root, tmp_path)
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 2
    metrics = runner.val()
    key = 'mIoU' if 'upernet' in osp.basename(path) else 'coco/bbox_mAP'
    assert key in metrics and math.isfinite(metrics[key]), metrics
