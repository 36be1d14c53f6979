"""RetinaNet, Mask R-CNN and UperNet train, learn and evaluate on the embedded data."""
import math

import pytest
import torch
from conftest import smoke_cfg
from mmengine.optim import OptimWrapper
from mmengine.runner import Runner

EXPECTED_METRICS = {
    'retinanet': ('coco/bbox_mAP', 'coco/bbox_mAP_50'),
    'mask-rcnn': ('coco/bbox_mAP', 'coco/segm_mAP'),
    'upernet': ('mIoU', 'mAcc', 'aAcc'),
}


def _overfit_losses(runner, steps=12):
    """Losses of repeated steps on one fixed batch with a fresh optimiser."""
    torch.manual_seed(0)
    model = runner.model
    model.train()
    batch = next(iter(runner.train_dataloader))
    optim = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=1e-3))
    losses = []
    for _ in range(steps):
        log_vars = model.train_step(batch, optim)
        losses.append(float(log_vars['loss']))
    return losses


@pytest.mark.parametrize('name', sorted(EXPECTED_METRICS))
def test_pipeline_trains_learns_and_evaluates(name, embedded_root, tmp_path):
    cfg = smoke_cfg(name, embedded_root, tmp_path)
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == cfg.train_cfg.max_iters

    metrics = runner.test()
    for key in EXPECTED_METRICS[name]:
        assert key in metrics, f'{key} missing from {sorted(metrics)}'
        assert math.isfinite(metrics[key]) and metrics[key] >= 0

    losses = _overfit_losses(runner)
    assert all(math.isfinite(v) for v in losses)
    assert min(losses[-3:]) < 0.8 * losses[0], f'loss did not decrease: {losses}'

    # The embedded run draws its curves into the log folder.
    assert (tmp_path / runner.timestamp / 'curves.png').is_file()
