"""Evaluate a checkpoint with an mmdet or mmseg config (box/mask mAP, mIoU).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--embedded {demo,smoke}]
                         [--out results.pkl] [--cfg-options k=v ...] [--launcher ...]
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout

import mmext  # noqa: E402,F401  (stack fixes before anything loads a checkpoint)
from mmext.utils.checkpoint import load_matching_checkpoint  # noqa: E402
from mmext.utils.config import (DictAction, check_data, cpu_only_fixes,  # noqa: E402
                                ensure_embedded_data, load_config, register_library)
from mmext.utils.errors import friendly_errors  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test (and evaluate) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the dir to save logs and metrics')
    parser.add_argument('--out', help='mmdet: dump predictions to this .pkl file; mmseg: write prediction PNGs '
                        'to this folder')
    parser.add_argument(
        '--embedded', nargs='?', const='demo', choices=['demo', 'smoke'],
        help='evaluate on the embedded data (generated if missing)')
    parser.add_argument('--data-root', help='embedded data folder (default data/embedded)')
    parser.add_argument(
        '--allow-partial', action='store_true',
        help='evaluate even if the checkpoint misses some model weights or has extra ones')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, e.g. test_evaluator.classwise=True')
    parser.add_argument(
        '--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none',
        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def main(argv=None):
    args = parse_args(argv)
    with friendly_errors('test'):
        cfg = load_config(args.config, args.cfg_options, args.embedded, args.data_root)
        lib = register_library(cfg)
        cfg.launcher = args.launcher
        cpu_only_fixes(cfg, distributed=args.launcher != 'none')
        if args.work_dir is not None:
            cfg.work_dir = args.work_dir
        elif cfg.get('work_dir', None) is None:
            cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
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

        from mmengine.registry import RUNNERS
        from mmengine.runner import Runner
        runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
        load_matching_checkpoint(runner, args.checkpoint, strict=not args.allow_partial)
        runner.test()


if __name__ == '__main__':
    main()
