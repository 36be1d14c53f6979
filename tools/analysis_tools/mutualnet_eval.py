"""Evaluate one slimmable (MutualNet-trained) checkpoint at a grid of widths and
input resolutions, and draw its accuracy-vs-FLOPs curve.

    python tools/analysis_tools/mutualnet_eval.py CONFIG CHECKPOINT
        [--widths 0.7 0.85 1.0] [--resolutions 1.0 0.75] [--calib-batches 8]
        [--out DIR] [--embedded {demo,smoke}] [--data-root DIR] [--allow-partial]
        [--cfg-options k=v ...]

The config's backbone is slimmable (``slimmable=dict(width_mult_list=...)``,
e.g. configs/mutualnet/). For every (width, resolution): the width is set, the
BN statistics are recomputed on ``--calib-batches`` training batches resized
by the resolution (official MutualNet post-training calibration), the test set
is evaluated with the test pipeline's ``Resize`` scale multiplied by the
resolution (a resolution is a scale factor of the config's test size), and the
FLOPs of the whole model are counted on the first test image at that size.
``--widths`` defaults to the backbone's ``width_mult_list``, ``--resolutions``
to 1. ``--embedded`` evaluates on the embedded data (as tools/test.py).

Writes DIR/width_grid.md (table), DIR/width_grid.json and DIR/width_grid.png
(one line per width through its resolutions); DIR defaults to
WORK_DIR/mutualnet_eval. The work is in ``mmext/analysis/width_grid.py``.
"""
import argparse
import itertools
import os.path as osp
import sys

import mmext  # noqa: F401  (stack fixes before anything loads a checkpoint)
from mmext.utils.config import (add_run_args, build_runner, check_data, ensure_embedded_data,
                                parse_run_args, prepare_run_cfg)
from mmext.utils.errors import MMExtError, friendly_errors


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Evaluate a slimmable checkpoint at a grid of widths x resolutions')
    parser.add_argument('config', help='config with a slimmable backbone')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--widths', nargs='+', type=float,
                        help="width multipliers in (0, 1] (default: the backbone's "
                        'width_mult_list)')
    parser.add_argument('--resolutions', nargs='+', type=float, default=[1.0],
                        help="scale factors of the config's test size (default 1)")
    parser.add_argument('--calib-batches', type=int, default=8,
                        help='training batches for each BN calibration (default 8, official)')
    parser.add_argument('--out', help='output folder (default WORK_DIR/mutualnet_eval)')
    parser.add_argument(
        '--allow-partial', action='store_true',
        help='evaluate even if the checkpoint misses some model weights or has extra ones')
    return parse_run_args(add_run_args(parser), argv)


def _drop_mutualnet_hooks(cfg):
    # The training hook calibrates BN before every test at the full
    # resolution; here each point is calibrated by the tool at its own.
    hooks = cfg.get('custom_hooks') or []
    cfg.custom_hooks = [h for h in hooks
                        if not str(h.get('type', '')).endswith('MutualNetHook')]


def main(argv=None):
    args = parse_args(argv)
    with friendly_errors('mutualnet_eval'):
        if args.calib_batches < 1:
            raise MMExtError(f'--calib-batches {args.calib_batches}: give at least 1')
        from mmengine.runner import Runner

        from mmext.analysis.width_grid import evaluate_grid, write_results
        from mmext.models.layers.slimmable import width_mult_list_of
        from mmext.utils.checkpoint import load_matching_checkpoint
        cfg, _ = prepare_run_cfg(args)
        cfg.load_from = None
        cfg.resume = False
        _drop_mutualnet_hooks(cfg)
        ensure_embedded_data(cfg)
        check_data(cfg, ('train_dataloader', 'test_dataloader'))
        runner = build_runner(cfg)
        model = getattr(runner.model, 'module', runner.model)
        try:
            widths = args.widths or list(width_mult_list_of(model))
        except ValueError as exc:
            raise MMExtError(f'{args.config}: {exc}') from exc
        load_matching_checkpoint(runner, args.checkpoint, strict=not args.allow_partial)
        train_loader = Runner.build_dataloader(cfg.train_dataloader, seed=0)
        points = evaluate_grid(runner, itertools.islice(train_loader, args.calib_batches),
                               widths, args.resolutions, args.calib_batches,
                               log=lambda line: print(f'[mutualnet_eval] {line}', flush=True))
        out = args.out or osp.join(cfg.work_dir, 'mutualnet_eval')
        name = osp.splitext(osp.basename(args.config))[0]
        files = write_results(points, out, title=name)
    with open(files[0], encoding='utf-8') as f:
        print(f.read(), end='')
    print('[mutualnet_eval] wrote ' + ', '.join(files))
    return 0


if __name__ == '__main__':
    sys.exit(main())
