"""Evaluate a checkpoint with an mmdet or mmseg config (box/mask mAP, mIoU).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--embedded {demo,smoke}]
                         [--out FILE] [--allow-partial] [--cfg-options k=v ...]
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout

import mmext  # noqa: E402,F401  (stack fixes before anything loads a checkpoint)
from mmext.utils.checkpoint import load_matching_checkpoint  # noqa: E402
from mmext.utils.config import (add_run_args, build_runner, check_data,  # noqa: E402
                                ensure_embedded_data, parse_run_args, prepare_run_cfg)
from mmext.utils.errors import friendly_errors  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test (and evaluate) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out', help='mmdet: dump predictions to this .pkl file; mmseg: write '
                        'prediction PNGs to this folder')
    parser.add_argument(
        '--allow-partial', action='store_true',
        help='evaluate even if the checkpoint misses some model weights or has extra ones')
    return parse_run_args(add_run_args(parser), argv)


def main(argv=None):
    args = parse_args(argv)
    with friendly_errors('test'):
        cfg, lib = prepare_run_cfg(args)
        # Loading is done below, with a key check, instead of by the runner.
        cfg.load_from = None
        cfg.resume = False
        ensure_embedded_data(cfg)
        check_data(cfg, ('test_dataloader', ))

        if args.out is not None:
            if lib == 'mmdet':
                dump = dict(type='DumpDetResults', out_file_path=args.out)
                evaluators = cfg.test_evaluator
                cfg.test_evaluator = (list(evaluators) if isinstance(evaluators, (list, tuple))
                                      else [evaluators]) + [dump]
            else:  # mmseg writes one prediction PNG per image into a folder
                cfg.test_evaluator.update(output_dir=args.out, keep_results=True)

        runner = build_runner(cfg)
        load_matching_checkpoint(runner, args.checkpoint, strict=not args.allow_partial)
        runner.test()


if __name__ == '__main__':
    main()
