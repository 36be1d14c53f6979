"""The --embedded switch turns any full-scale config into a CPU-sized run."""
import os.path as osp

import pytest
from conftest import CONFIGS, PIPELINES
from mmengine.config import Config

from mmext.datasets.embedded import ADE_CLASSES, CLASSES
from mmext.utils.embedded import detect_task, embedded_base, to_embedded

FULL_SCALE = {
    'coco_detection': osp.join(CONFIGS, 'resnet', 'retinanet_r50_fpn_1x_coco.py'),
    'coco_instance': osp.join(CONFIGS, 'resnet', 'mask-rcnn_r50_fpn_1x_coco.py'),
    'ade20k': osp.join(CONFIGS, 'resnet', 'upernet_r50_4xb4-160k_ade20k-512x512.py'),
}


def _num_classes(model):
    found = []

    def walk(node):
        if isinstance(node, dict):
            if 'num_classes' in node:
                found.append(node['num_classes'])
            for v in node.values():
                walk(v)
    walk(model)
    return found


@pytest.mark.parametrize('task', sorted(FULL_SCALE))
def test_full_scale_configs_are_the_upstream_recipes(task):
    cfg = Config.fromfile(FULL_SCALE[task])
    assert detect_task(cfg) == task
    if task == 'ade20k':
        assert cfg.train_dataloader.dataset.type == 'ADE20KDataset'
        assert cfg.train_cfg.max_iters == 160000 and cfg.crop_size == (512, 512)
        assert set(_num_classes(cfg.model)) == {150}
    else:
        assert cfg.train_dataloader.dataset.type == 'CocoDataset'
        assert cfg.train_cfg.max_epochs == 12
        assert set(_num_classes(cfg.model)) == {80}
        assert cfg.model.backbone.init_cfg.checkpoint == 'torchvision://resnet50'


@pytest.mark.parametrize('task', sorted(FULL_SCALE))
def test_to_embedded_swaps_data_scale_and_schedule(task, tmp_path):
    cfg = to_embedded(Config.fromfile(FULL_SCALE[task]), preset='demo', data_root=str(tmp_path))
    classes = ADE_CLASSES if task == 'ade20k' else CLASSES
    assert tuple(cfg.train_dataloader.dataset.metainfo.classes) == tuple(classes)
    assert set(_num_classes(cfg.model)) == {len(classes)}
    assert cfg.train_dataloader.dataset.data_root.startswith(str(tmp_path))
    assert cfg.train_cfg.type == 'IterBasedTrainLoop'
    # trained from scratch: no download, nothing frozen
    assert 'Pretrained' not in cfg.pretty_text
    assert cfg.model.backbone.get('frozen_stages', -1) == -1
    assert cfg.model.backbone.get('norm_eval', False) is False
    assert cfg.randomness.seed == 0  # repeatable runs
    # every schedule placeholder is resolved
    for sched in cfg.param_scheduler:
        assert all(not isinstance(v, str) or k == 'type' for k, v in sched.items()), sched


def test_cfg_options_reshape_the_schedule(tmp_path):
    cfg = to_embedded(Config.fromfile(PIPELINES['retinanet']), preset='demo',
                      data_root=str(tmp_path), cfg_options={'train_cfg.max_iters': 300})
    ends = [s['end'] for s in cfg.param_scheduler]
    assert ends == [30, 300]


def test_embedded_bases_list_the_generator_classes():
    det = Config.fromfile(embedded_base('coco_detection'))
    ins = Config.fromfile(embedded_base('coco_instance'))
    seg = Config.fromfile(embedded_base('ade20k'))
    assert tuple(det.metainfo.classes) == tuple(CLASSES) == tuple(ins.metainfo.classes)
    assert tuple(seg.metainfo.classes) == tuple(ADE_CLASSES)
    assert ins.val_evaluator.metric == ['bbox', 'segm']


def test_unknown_preset_is_rejected():
    with pytest.raises(ValueError, match='preset'):
        to_embedded(Config.fromfile(PIPELINES['retinanet']), preset='huge')


def test_a_designs_parameter_groups_survive_the_schedule_swap(tmp_path):
    cfg = Config.fromfile(FULL_SCALE['coco_detection'])
    groups = dict(norm_decay_mult=0., custom_keys={'layer_scale': dict(decay_mult=0.)})
    cfg.optim_wrapper = dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.1),
                             paramwise_cfg=groups)
    cfg = to_embedded(cfg, preset='smoke', data_root=str(tmp_path))
    assert cfg.optim_wrapper.optimizer.type == 'AdamW'  # the embedded schedule's optimizer
    assert cfg.optim_wrapper.paramwise_cfg.to_dict() == groups
    plain = to_embedded(Config.fromfile(FULL_SCALE['coco_detection']), preset='smoke',
                        data_root=str(tmp_path))
    assert 'paramwise_cfg' not in plain.optim_wrapper
