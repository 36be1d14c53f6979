"""Every design config builds, trains a few iterations and evaluates on the
embedded data.

The backbone is built exactly as the config says (the design under test, at
full width); only the image size, the iteration count and the width of the
necks and heads are shrunk so that the whole set fits in CI on two cores.
"""
import glob
import math
import os.path as osp

import pytest
from conftest import CONFIGS
from mmengine.runner import Runner

from mmext.utils.config import load_config, register_library
from mmext.utils.embedded import walk_dicts

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
    cfg = load_config(path, dict(train_cfg=dict(max_iters=2)), embedded='smoke',
                      data_root=data_root)
    register_library(cfg)
    _shrink_heads(cfg.model)
    cfg.train_dataloader.dataset.indices = 4
    cfg.val_dataloader.dataset.indices = 2
    cfg.val_evaluator = cfg.test_evaluator
    # Evaluate once, after training; no checkpoint of a full-width backbone.
    cfg.train_cfg.val_interval = 10**6
    cfg.default_hooks.checkpoint = None
    cfg.work_dir = str(work_dir)
    cfg.experiment_name = f'{osp.basename(path)}_{id(cfg)}'
    return cfg


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
