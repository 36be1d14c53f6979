"""The README's main job: train and evaluate on the embedded data.

    python tools/demo.py                       # RetinaNet R-18, prints box mAP
    python tools/demo.py --model mask-rcnn     # box + mask mAP
    python tools/demo.py --model upernet       # mIoU
    python tools/demo.py --model all

Each run writes work_dirs/demo/<model>/ (under the current folder): logs, checkpoints, curves.png (loss and
metric curves) and summary.json (final metrics and wall time). Use
tools/demo.sh to also set up the environment on a fresh machine.
"""
import argparse
import json
import os
import os.path as osp
import platform
import time

import mmext  # noqa: F401
from mmext.utils.config import (DictAction, build_runner, check_data, ensure_embedded_data,
                                load_config, register_library)
from mmext.utils.errors import friendly_errors

# mmext's configs (``mmext::``, the installed package's), so the demo runs
# from any folder.
MODELS = {
    'retinanet': ('mmext::resnet/retinanet_r18_fpn-c128_1x_coco.py', ('bbox_mAP', 'bbox_mAP_50')),
    'mask-rcnn': ('mmext::resnet/mask-rcnn_r18_fpn-c128_1x_coco.py',
                  ('bbox_mAP', 'bbox_mAP_50', 'segm_mAP', 'segm_mAP_50')),
    'upernet': ('mmext::resnet/upernet_r18-c128_4xb4-160k_ade20k-512x512.py', ('mIoU', 'mAcc')),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--model', default='retinanet', choices=[*MODELS, 'all'])
    parser.add_argument('--preset', default='demo', choices=['demo', 'smoke'],
                        help='demo: the documented run; smoke: a few iterations')
    parser.add_argument('--work-dir', default=osp.join('work_dirs', 'demo'))
    parser.add_argument('--data-root', help='embedded data folder (default data/embedded)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='extra key=value overrides, as in tools/train.py')
    return parser.parse_args(argv)


def run_one(name, args):
    config, keys = MODELS[name]
    cfg = load_config(config, args.cfg_options, args.preset, args.data_root)
    register_library(cfg)
    cfg.work_dir = osp.join(args.work_dir, name)
    ensure_embedded_data(cfg)
    check_data(cfg, ('train_dataloader', 'val_dataloader'))

    runner = build_runner(cfg)
    start = time.time()
    runner.train()
    wall = time.time() - start
    curve = next(h for h in runner.hooks if type(h).__name__ == 'TrainingCurveHook')
    metrics = {k: v[-1][1] for k, v in curve.metrics.items()}
    summary = dict(
        model=name, config=config, preset=args.preset, iters=cfg.train_cfg.max_iters,
        train_batch_size=cfg.train_dataloader.batch_size, wall_time_s=round(wall, 1),
        metrics=metrics, machine=dict(cpus=os.cpu_count(), platform=platform.platform()),
        curves=osp.join(runner.log_dir, 'curves.png'))
    with open(osp.join(cfg.work_dir, 'summary.json'), 'w') as f:
        json.dump(summary, f, indent=2)
    shown = ', '.join(f'{k}={metrics[k]:.3f}' for k in keys if k in metrics)
    print(f'\n[mmext demo] {name}: {shown} after {summary["iters"]} iterations in '
          f'{wall / 60:.1f} min; curves: {summary["curves"]}\n', flush=True)
    return summary


def main(argv=None):
    args = parse_args(argv)
    names = list(MODELS) if args.model == 'all' else [args.model]
    with friendly_errors('demo'):
        summaries = [run_one(name, args) for name in names]
    for s in summaries:
        shown = ', '.join(f'{k}={v:.3f}' for k, v in s['metrics'].items())
        print(f'[mmext demo] {s["model"]:>10}: {shown} ({s["wall_time_s"] / 60:.1f} min)')


if __name__ == '__main__':
    main()
