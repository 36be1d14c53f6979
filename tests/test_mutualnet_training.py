"""MutualNet training (mmext.MutualNetHook, mmext/models/mutualnet.py): the
distillation losses, the sandwich step (four forwards, one optimizer step), the
batch resize, DDP, and one checkpoint evaluated at several widths."""
import json
import math
import os
import os.path as osp
import sys

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook
from conftest import ROOT, run_tool, smoke_cfg
from mmengine.runner import Runner
from test_distributed import _free_port

from mmext.models.layers.slimmable import current_width_mult
from mmext.models.mutualnet import (MutualNetDistiller, bernoulli_kl, resize_batch,
                                    softmax_kl)

WIDTHS = (0.7, 1.0)
RESOLUTIONS = [1.0, 0.75, 0.5]


def mutualnet_options():
    """The R-18 RetinaNet smoke model made slimmable, with the hook."""
    return {
        'model.backbone.type': 'mmext.ResNet',
        'model.backbone.norm_eval': False,
        'model.backbone.slimmable': dict(width_mult_list=list(WIDTHS), width_mult=1.0),
        'model.neck.type': 'mmext.SlimmableFPN',
        'model.neck.out_channels': 32,
        'model.bbox_head.in_channels': 32,
        'model.bbox_head.feat_channels': 32,
        'model.bbox_head.stacked_convs': 1,
        'custom_hooks': [dict(type='mmext.MutualNetHook', width_mult_range=WIDTHS,
                              resolution_list=RESOLUTIONS, calibration_batches=2,
                              distill=dict(score_thr=0.05))],
    }


# --------------------------------------------------------------------------
# Distillation losses


def test_kl_terms_zero_iff_student_equals_teacher():
    torch.manual_seed(0)
    t = torch.randn(2, 5, 3, 4) * 3
    for kl in (bernoulli_kl(t, t), softmax_kl(t, t, dim=1),
               bernoulli_kl(t, t, temperature=2.0), softmax_kl(t, t, temperature=4.0)):
        assert torch.count_nonzero(kl) == 0
    s = t + torch.randn_like(t)
    assert (bernoulli_kl(s, t) > 0).all()
    assert (softmax_kl(s, t, dim=1) > 0).all()
    # softmax_kl is torch's KLDivLoss(log_softmax(s), softmax(t)) before its reduction.
    ref = torch.nn.KLDivLoss(reduction='sum')(s.log_softmax(1), t.softmax(1))
    assert torch.allclose(softmax_kl(s, t, dim=1).sum(), ref, rtol=1e-5)
    # ... and bernoulli_kl the KL of Bernoulli(sigmoid(t)) to Bernoulli(sigmoid(s)).
    p, q = t.sigmoid(), s.sigmoid()
    ref = p * (p / q).log() + (1 - p) * ((1 - p) / (1 - q)).log()
    assert torch.allclose(bernoulli_kl(s, t), ref, atol=1e-5)


def _retina_head():
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.registry import DefaultScope
    register_all_modules(init_default_scope=False)
    # An earlier test on the same worker may leave mmseg the default scope,
    # where the head's sub-components (anchor generator, coder) are unknown.
    with DefaultScope.overwrite_default_scope('mmdet'):
        return MODELS.build(dict(
            type='RetinaHead', num_classes=3, in_channels=8, feat_channels=8, stacked_convs=1,
            anchor_generator=dict(type='AnchorGenerator', octave_base_scale=4,
                                  scales_per_octave=1, ratios=[1.0], strides=[8, 16]),
            bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0.1, 0, 0, 0],
                            target_stds=[0.1, 0.1, 0.2, 0.2])))


def test_dense_and_seg_distillation_zero_only_at_equality():
    torch.manual_seed(0)
    head = _retina_head()
    distiller = MutualNetDistiller(score_thr=0.0)
    outs = head([torch.randn(2, 8, 8, 10), torch.randn(2, 8, 4, 5)])
    teacher = tuple([o.detach() for o in level] for level in outs)
    same = distiller.dense_loss(outs, teacher, head, (1.0, 1.0))
    assert set(same) == {'loss_kd_cls', 'loss_kd_bbox'}
    assert all(v.item() == 0 for v in same.values()), same
    other = head([torch.randn(2, 8, 8, 10), torch.randn(2, 8, 4, 5)])
    diff = distiller.dense_loss(other, teacher, head, (1.0, 1.0))
    assert all(v.item() > 0 for v in diff.values()), diff
    diff['loss_kd_cls'].backward()
    assert head.retina_cls.weight.grad.abs().sum() > 0

    logits = torch.randn(2, 4, 6, 6, requires_grad=True)
    assert distiller.seg_loss(logits, logits.detach()).item() == 0
    assert distiller.seg_loss(logits, torch.randn(2, 4, 12, 12)).item() > 0


def test_teacher_boxes_are_carried_to_the_student_scale():
    """The box target is the teacher's box scaled into the student's image and
    encoded against the student's anchor at the same relative position (the
    coder's means / stds included): check the closed form against mmdet's
    coder on a 2x downscale (a 2x2 map becomes 1x1, corners aligned)."""
    from mmdet.structures.bbox import HorizontalBoxes  # noqa: F401 (registers box types)
    head = _retina_head()
    coder = head.bbox_coder
    distiller = MutualNetDistiller(score_thr=-1.0)  # every position matched
    sx, sy = 0.5, 0.5
    anchor_t = torch.tensor([[0.0, 0.0, 32.0, 32.0]])  # teacher anchor at (16, 16)
    anchor_s = torch.tensor([[-8.0, -8.0, 24.0, 24.0]])  # same size at (8, 8) = 0.5 * (16, 16)
    box_t = torch.tensor([[4.0, 6.0, 40.0, 30.0]])
    target = coder.encode(anchor_s, box_t * torch.tensor([sx, sy, sx, sy]))
    t_reg = coder.encode(anchor_t, box_t).view(1, 4, 1, 1).expand(1, 4, 2, 2).contiguous()
    t_cls = torch.zeros(1, 3, 2, 2)
    s_reg = target.view(1, 4, 1, 1).clone().requires_grad_()
    losses = distiller.dense_loss(([torch.zeros(1, 3, 1, 1)], [s_reg]), ([t_cls], [t_reg]),
                                  head, (sx, sy))
    assert losses['loss_kd_bbox'].item() < 1e-5, losses
    assert distiller.dense_loss(([torch.zeros(1, 3, 1, 1)], [s_reg + 0.1]),
                                ([t_cls], [t_reg]), head, (sx, sy))['loss_kd_bbox'] > 0.3


def test_unknown_heads_and_plain_backbones_are_refused(embedded_root, tmp_path):
    from mmext.engine.hooks import MutualNetHook
    from mmdet.registry import MODELS
    from mmengine.registry import DefaultScope
    cfg = smoke_cfg('retinanet', embedded_root, tmp_path)
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(cfg.model)
    with pytest.raises(ValueError, match='no slimmable option set') as info:
        MutualNetHook().check_model(model)
    assert '\n' not in str(info.value)
    # The tools print it as their one line, not a traceback.
    from mmext.utils.errors import explain
    assert explain(info.value) == str(info.value)

    class FCOSLike(torch.nn.Module):
        bbox_head = torch.nn.Conv2d(1, 1, 1)
        extract_feat = None
    with pytest.raises(ValueError, match='no distillation rule for bbox_head Conv2d'):
        MutualNetDistiller.kind_of(FCOSLike())
    class CascadeLike(torch.nn.Module):
        decode_head = torch.nn.ModuleList()
        extract_feat = None
    with pytest.raises(ValueError, match='no distillation rule for CascadeLike'):
        MutualNetDistiller.kind_of(CascadeLike())
    with pytest.raises(ValueError, match='width_mult_range'):
        MutualNetHook(width_mult_range=(0.8, 0.5))


# --------------------------------------------------------------------------
# The batch resize


def test_resize_keeps_boxes_masks_and_seg_maps_aligned():
    from mmdet.structures import DetDataSample
    from mmdet.structures.bbox import HorizontalBoxes
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData, PixelData
    from mmseg.structures import SegDataSample

    H, W = 64, 96
    img = torch.zeros(1, 3, H, W)
    img[..., 16:48, 24:72] = 1.0  # the object: rows 16-47, columns 24-71
    mask = torch.zeros(1, H, W, dtype=torch.uint8)
    mask[:, 16:48, 24:72] = 1
    det = DetDataSample(metainfo=dict(img_shape=(60, 90), pad_shape=(H, W),
                                      batch_input_shape=(H, W), scale_factor=(2.0, 2.0),
                                      ori_shape=(30, 45)))
    det.gt_instances = InstanceData(bboxes=HorizontalBoxes(torch.tensor([[24., 16., 72., 48.]])),
                                    masks=BitmapMasks(mask.numpy(), H, W),
                                    labels=torch.tensor([0]))
    seg = SegDataSample(metainfo=dict(img_shape=(H, W), pad_shape=(H, W)))
    seg.gt_sem_seg = PixelData(data=mask.long() * 5)

    out, (d, s), (sx, sy) = resize_batch(img, [det, seg], 0.5, size_divisor=16)
    h, w = out.shape[-2:]
    assert (h, w) == (32, 48) and (sx, sy) == (0.5, 0.5)
    assert det.gt_instances.bboxes.tensor.tolist() == [[24., 16., 72., 48.]]  # copies
    assert d.metainfo['img_shape'] == (30, 45) and d.metainfo['pad_shape'] == (32, 48)
    assert d.metainfo['batch_input_shape'] == (32, 48)
    assert d.metainfo['scale_factor'] == (1.0, 1.0) and d.metainfo['ori_shape'] == (30, 45)
    x1, y1, x2, y2 = d.gt_instances.bboxes.tensor[0].tolist()
    assert (x1, y1, x2, y2) == (12., 8., 36., 24.)
    obj = out[0, 0] > 0.5
    rows, cols = obj.nonzero(as_tuple=True)
    # The object's pixels and the rescaled box agree within a pixel.
    assert abs(rows.min() - y1) <= 1 and abs(rows.max() + 1 - y2) <= 1
    assert abs(cols.min() - x1) <= 1 and abs(cols.max() + 1 - x2) <= 1
    m = torch.from_numpy(d.gt_instances.masks.masks[0]).bool()
    assert m.shape == (h, w) and (m ^ obj).sum() <= 2 * (h + w)
    assert (m & obj).sum() >= 0.8 * obj.sum()
    sm = s.gt_sem_seg.data[0]
    assert sm.shape == (h, w) and set(sm.unique().tolist()) == {0, 5}
    assert torch.equal(sm == 5, m)
    # Scale 1 (and any scale that rounds to the same size) leaves the batch alone.
    same, samples, factors = resize_batch(img, [det], 1.0, size_divisor=32)
    assert same is img and samples[0] is det and factors == (1.0, 1.0)


# --------------------------------------------------------------------------
# Training: one run shared by the tests below


@pytest.fixture(scope='module')
def trained(embedded_root, tmp_path_factory):
    work_dir = tmp_path_factory.mktemp('mutualnet')
    cfg = smoke_cfg('retinanet', embedded_root, work_dir, **mutualnet_options())
    cfg.train_cfg.max_iters = 2
    cfg.train_cfg.val_interval = 2
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=2, by_epoch=False)
    runner = Runner.from_cfg(cfg)
    backbone = runner.model.backbone
    events = []

    def on_forward(module, args):
        phase = 'train' if module.training else 'eval'
        events.append((phase, runner.iter, current_width_mult(module),
                       tuple(args[0].shape[-2:])))

    def on_step(optimizer, args, kwargs):
        events.append(('step', runner.iter))

    handles = [backbone.register_forward_pre_hook(on_forward),
               register_optimizer_step_post_hook(on_step)]
    try:
        runner.train()
    finally:
        for h in handles:
            h.remove()
    return runner, events, work_dir


def test_one_iteration_runs_four_forwards_and_one_step(trained):
    runner, events, _ = trained
    assert runner.iter == 2
    for it in range(2):
        forwards = [e for e in events if e[0] == 'train' and e[1] == it]
        steps = [e for e in events if e[0] == 'step' and e[1] == it]
        assert len(forwards) == 4 and len(steps) == 1, events
        # teacher (max width, full size), then min width, then two random widths.
        (_, _, w0, size0), (_, _, w1, _), *rand = forwards
        assert w0 == 1.0 and w1 == 0.7
        assert all(0.7 <= w <= 1.0 for _, _, w, _ in rand)
        assert all(s[0] <= size0[0] and s[1] <= size0[1] for *_, s in forwards)
    # The model is back at its evaluation width, and the log shows every subnet.
    assert current_width_mult(runner.model.backbone) == 1.0
    scalars = runner.message_hub.log_scalars
    for key in ('loss_cls', 'min.loss_kd_cls', 'min.loss_kd_bbox', 'rand2.loss_kd_cls',
                'rand1.width_mult', 'rand1.scale'):
        assert f'train/{key}' in scalars, sorted(scalars)
    assert math.isfinite(scalars['train/loss'].current())
    # Validation after training calibrated BN first: backbone forwards in eval
    # mode (the calibration batches) before the validation images.
    assert any(e[0] == 'eval' for e in events)


def test_checkpoint_evaluates_at_three_widths(trained, embedded_root, tmp_path):
    tool = osp.join(ROOT, 'tools', 'analysis_tools', 'mutualnet_eval.py')
    if not osp.isfile(tool):
        pytest.skip('tools/analysis_tools/mutualnet_eval.py not present')
    runner, _, work_dir = trained
    checkpoint = work_dir / 'iter_2.pth'
    assert checkpoint.is_file()
    config = work_dir / 'mutualnet_retinanet.py'
    runner.cfg.dump(str(config))
    proc = run_tool(tool, str(config), str(checkpoint), '--widths', '0.7', '0.85', '1.0',
                    '--calib-batches', '2', '--out', str(tmp_path))
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    with open(tmp_path / 'width_grid.json') as f:
        points = json.load(f)
    assert [p['width_mult'] for p in points] == [0.7, 0.85, 1.0]
    flops = [p['flops'] for p in points]
    assert flops[0] < flops[1] < flops[2], flops
    assert all(math.isfinite(p['metrics']['coco/bbox_mAP']) for p in points)
    assert (tmp_path / 'width_grid.png').is_file()


@pytest.mark.slow
def test_ddp_two_processes(embedded_root, tmp_path):
    """The hook under MMDistributedDataParallel (2 gloo processes on CPU): one
    forward per iteration runs the sandwich, gradients reduce, BN statistics
    are averaged after calibration."""
    import subprocess
    config = tmp_path / 'mutualnet_retinanet.py'
    cfg = smoke_cfg('retinanet', embedded_root, tmp_path, **mutualnet_options())
    cfg.dump(str(config))
    env = dict(os.environ, PORT=str(_free_port()), PYTHON=sys.executable, PYTHONUNBUFFERED='1')
    proc = subprocess.run(
        ['bash', osp.join(ROOT, 'tools', 'dist_train.sh'), str(config), '2', '--work-dir',
         str(tmp_path / 'work'), '--cfg-options', 'train_cfg.max_iters=2',
         'train_cfg.val_interval=2', 'default_hooks.logger.interval=1'],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert 'Distributed training: True' in out
    assert 'MMDistributedDataParallel' in out or "'world_size': 2" in out, out[-4000:]
    assert 'min.loss_kd_cls' in out and 'Iter(val)' in out, out[-4000:]
