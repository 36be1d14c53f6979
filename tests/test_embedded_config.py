"""The --embedded switch turns any full-scale config into a CPU-sized run."""
import os.path as osp

import pytest
from conftest import CONFIGS, PIPELINES
from mmengine.config import Config

from mmext.datasets.embedded import ADE_CLASSES, CLASSES
from mmext.utils.embedded import detect_task, embedded_base, fit_schedule, to_embedded

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
    assert cfg.param_scheduler[1].T_max == 300
    # a schedule given in cfg_options is taken as written
    mine = [dict(type='ConstantLR', factor=0.5, by_epoch=False, begin=0, end=10)]
    cfg = to_embedded(Config.fromfile(PIPELINES['retinanet']), preset='demo',
                      data_root=str(tmp_path),
                      cfg_options={'train_cfg.max_iters': 300, 'param_scheduler': mine})
    assert [dict(s) for s in cfg.param_scheduler] == mine


# mmengine counts optimizer steps per scheduler; the second one misses the first step.
@pytest.mark.filterwarnings('ignore:Detected call of `scheduler.step')
def test_the_embedded_schedule_is_a_config_of_its_own():
    """configs/_base_/schedules/embedded.py builds as it is (numbers, not
    placeholders): its optimizer and schedulers step through its iterations."""
    import torch
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import PARAM_SCHEDULERS

    sched = Config.fromfile(osp.join(CONFIGS, '_base_', 'schedules', 'embedded.py'))
    max_iters = sched.train_cfg.max_iters
    assert isinstance(max_iters, int) and isinstance(sched.train_cfg.val_interval, int)
    assert isinstance(sched.default_hooks.checkpoint.interval, int)
    wrapper = build_optim_wrapper(torch.nn.Linear(2, 2), sched.optim_wrapper)
    schedulers = [PARAM_SCHEDULERS.build(dict(s, optimizer=wrapper))
                  for s in sched.param_scheduler]
    lrs = []
    for _ in range(max_iters):
        lrs.append(wrapper.get_lr()['lr'][0])
        wrapper.optimizer.step()
        for s in schedulers:
            s.step()
    base = sched.optim_wrapper.optimizer.lr
    assert lrs[0] == pytest.approx(0.01 * base)  # warm-up from 1% of the lr
    assert max(lrs) <= base and lrs.index(max(lrs)) <= sched.param_scheduler[0].end
    assert lrs[-1] < 0.02 * base  # cosine decay to 1% at the end
    # fitted to its own length, the file's schedule is unchanged
    assert fit_schedule(sched.param_scheduler, max_iters, max_iters) == sched.param_scheduler


def test_the_presets_fit_the_schedule_to_their_length(tmp_path):
    demo = to_embedded(Config.fromfile(FULL_SCALE['ade20k']), preset='demo',
                       data_root=str(tmp_path))
    assert demo.train_cfg.max_iters == 400
    assert [(s.type, s.end) for s in demo.param_scheduler] == [('LinearLR', 40),
                                                               ('CosineAnnealingLR', 400)]
    smoke = to_embedded(Config.fromfile(FULL_SCALE['ade20k']), preset='smoke',
                        data_root=str(tmp_path))
    # 4 iterations: no warm-up (a one-step LinearLR would never restore the lr)
    assert [(s.type, s.end, s.T_max) for s in smoke.param_scheduler] == [
        ('CosineAnnealingLR', 4, 4)]


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
