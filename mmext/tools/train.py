"""Train an mmdet or mmseg config (the library is picked from default_scope).

    python -m mmext train CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
                          [--embedded {demo,smoke}] [--cfg-options k=v ...]
                          [--launcher {none,pytorch,slurm,mpi}] [--peak-memory]

``tools/train.py`` takes the same arguments. CONFIG is a file or an
``mmext::<folder>/<config>.py`` name.
"""
import argparse

import mmext  # noqa: F401  (stack fixes before anything loads a checkpoint)
from mmext.utils.config import (add_run_args, build_runner, check_data, ensure_embedded_data,
                                parse_run_args, prepare_run_cfg)
from mmext.utils.errors import MMExtError, friendly_errors


def parse_args(argv=None, prog=None):
    parser = argparse.ArgumentParser(prog=prog, description='Train a detector or segmentor')
    parser.add_argument('config', help='train config: a file or mmext::<folder>/<config>.py')
    parser.add_argument('--amp', action='store_true', help='mixed precision training (GPU)')
    parser.add_argument('--auto-scale-lr', action='store_true', help='scale lr by batch size')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from the given checkpoint, or from the latest one in the work dir')
    parser.add_argument(
        '--peak-memory', action='store_true',
        help='measure the peak memory of the training iterations into '
        'WORK_DIR/peak_memory.json (mmext.PeakMemoryHook)')
    return parse_run_args(add_run_args(parser), argv)


def build_cfg(args):
    cfg, _ = prepare_run_cfg(args)
    if args.amp:
        import torch
        if not torch.cuda.is_available():
            raise MMExtError('--amp needs a CUDA GPU (mmengine AMP is CUDA/NPU/MLU only); '
                             'train in fp32 on the CPU')
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')

    if args.auto_scale_lr:
        if 'auto_scale_lr' not in cfg or 'base_batch_size' not in cfg.auto_scale_lr:
            raise MMExtError('--auto-scale-lr needs auto_scale_lr.base_batch_size in the config')
        cfg.auto_scale_lr.enable = True

    if args.peak_memory:
        hooks = [h for h in cfg.get('custom_hooks', []) if 'PeakMemoryHook' not in h['type']]
        cfg.custom_hooks = hooks + [dict(type='mmext.PeakMemoryHook')]

    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    return cfg


def main(argv=None, prog=None):
    args = parse_args(argv, prog)
    with friendly_errors('train'):
        cfg = build_cfg(args)
        ensure_embedded_data(cfg)
        check_data(cfg, ('train_dataloader', 'val_dataloader'))
        build_runner(cfg).train()


if __name__ == '__main__':
    main()
