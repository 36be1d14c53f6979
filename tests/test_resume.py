"""An interrupted and resumed run ends with the weights of an uninterrupted one.

This is also the torch >= 2.6 ``weights_only`` regression test: resuming loads
an mmengine checkpoint (message hub, numpy metadata) through ``torch.load``.
"""
import torch
from conftest import smoke_cfg
from mmengine.hooks import Hook
from mmengine.runner import Runner

TOTAL, KILL_AT = 6, 3


class _Killed(Exception):
    pass


class KillAfter(Hook):
    """Dies right after the checkpoint of iteration ``k`` is written."""

    def __init__(self, k):
        self.k = k

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 == self.k:
            raise _Killed


def _cfg(embedded_root, work_dir, tag):
    cfg = smoke_cfg('retinanet', embedded_root, work_dir, **{
        'train_cfg.max_iters': TOTAL, 'train_cfg.val_interval': 100,
        'default_hooks.checkpoint.interval': KILL_AT})
    cfg.experiment_name = f'resume_{tag}'
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    return cfg


def test_resume_matches_uninterrupted_run(embedded_root, tmp_path):
    straight = Runner.from_cfg(_cfg(embedded_root, tmp_path / 'straight', 'straight'))
    straight.train()
    expected = {k: v.clone() for k, v in straight.model.state_dict().items()}

    killed = Runner.from_cfg(_cfg(embedded_root, tmp_path / 'resumed', 'killed'))
    killed.register_hook(KillAfter(KILL_AT), priority='LOWEST')
    try:
        killed.train()
        raise AssertionError('the run was not interrupted')
    except _Killed:
        pass
    assert (tmp_path / 'resumed' / f'iter_{KILL_AT}.pth').is_file()

    cfg = _cfg(embedded_root, tmp_path / 'resumed', 'resumed')
    cfg.resume = True
    resumed = Runner.from_cfg(cfg)
    resumed.train()
    assert resumed.iter == TOTAL

    got = resumed.model.state_dict()
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        if value.is_floating_point():
            diff = (got[key] - value).abs().max().item() if value.numel() else 0.0
            assert diff <= 1e-6, f'{key} differs by {diff}'
        else:
            assert torch.equal(got[key], value), key


def test_mmengine_checkpoint_loads_with_weights_only(embedded_root, tmp_path):
    import mmext  # noqa: F401
    cfg = _cfg(embedded_root, tmp_path, 'weights_only')
    cfg.train_cfg.max_iters = KILL_AT
    Runner.from_cfg(cfg).train()
    ckpt = torch.load(tmp_path / f'iter_{KILL_AT}.pth', weights_only=True)
    assert ckpt['meta']['iter'] == KILL_AT
    assert 'train/loss' in ckpt['message_hub']['log_scalars']
