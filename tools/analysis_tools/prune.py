"""Gradient-matrix pruning of a trained ResNet-family detector / segmentor.

    python tools/analysis_tools/prune.py CONFIG CHECKPOINT [--threshold TAU]
        [--calib-batches N] [--ratio R [R ...]] [--finetune-iters N] [--out DIR]
        [--embedded {demo,smoke}] [--data-root DIR] [--shape H W] [--repeats R]
        [--no-eval] [--cfg-options k=v ...]

Estimates each inner convolution's redundancy from the numerical rank of its
per-filter gradient matrix over calibration batches of the config's training
data, prunes at most that many filters per layer (times --ratio: one value or
one per stage), keeps the filters whose gradient rows add most to the row
space, and writes DIR/pruned_config.py + DIR/pruned.pth (physically smaller
tensors; mmdet / mmseg tools load them, the config imports mmext), an optional
fine-tune and DIR/report.md / report.json (params, FLOPs, latency, mAP / mIoU
before and after). A ``pruning = dict(threshold=, calib_batches=, ratio=,
finetune_iters=)`` section of CONFIG gives defaults. The work is in
``mmext/analysis/gradient_pruning.py``; docs/designs/gradient_pruning.md.
"""
import argparse
import sys

import mmext  # noqa: F401  (stack fixes)
from mmext.analysis.gradient_pruning import render, run_pruning
from mmext.utils.config import DictAction
from mmext.utils.errors import friendly_errors


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Gradient-matrix pruning of a ResNet backbone')
    parser.add_argument('config', help='config of the trained model')
    parser.add_argument('checkpoint', help='its checkpoint')
    parser.add_argument('--threshold', type=float,
                        help='relative singular-value threshold tau of the numerical rank '
                        '(default: the config\'s pruning.threshold, else 0.01)')
    parser.add_argument('--calib-batches', type=int,
                        help='calibration batches of the train dataloader (default 8)')
    parser.add_argument('--ratio', type=float, nargs='+',
                        help='fraction of the estimated redundancy pruned: one value or one per '
                        'stage, in [0, 1] (default 1)')
    parser.add_argument('--finetune-iters', type=int,
                        help='fine-tune the pruned model this many iterations (default 0)')
    parser.add_argument('--out', default='work_dirs/prune', help='output folder')
    parser.add_argument('--embedded', nargs='?', const='demo', choices=['demo', 'smoke'],
                        help='calibrate, fine-tune and evaluate on the embedded data')
    parser.add_argument('--data-root', help='embedded data folder (default data/embedded)')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        help='latency / FLOPs input (default 800 1333 mmdet, 512 512 mmseg)')
    parser.add_argument('--repeats', type=int, default=10, help='timed latency repeats')
    parser.add_argument('--warmup', type=int, default=3, help='untimed latency repeats')
    parser.add_argument('--no-eval', action='store_true', help='skip the mAP / mIoU evaluation')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config keys')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    result = run_pruning(args.config, args.checkpoint, args.out, threshold=args.threshold,
                         calib_batches=args.calib_batches, ratio=args.ratio,
                         finetune_iters=args.finetune_iters, embedded=args.embedded,
                         data_root=args.data_root, cfg_options=args.cfg_options,
                         shape=args.shape, repeats=args.repeats, warmup=args.warmup,
                         evaluate_metrics=not args.no_eval)
    print(render(result), end='')
    return 0


if __name__ == '__main__':
    with friendly_errors('prune'):
        sys.exit(main())
