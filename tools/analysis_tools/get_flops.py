"""Params and FLOPs of a detector / segmentor config, module by module.

    python tools/analysis_tools/get_flops.py CONFIG [--shape H [W]] [--backbone-only]
        [--json OUT] [--cfg-options k=v ...]

Default shape: 800x1333 for mmdet configs, 512x512 for mmseg configs, 224x224
with ``--backbone-only``. The model is built untrained and traced once in eval
mode (tensor forward: backbone, neck, heads; no post-processing) by mmengine's
FlopAnalyzer with mmext's handles for fused attention, FFTs and per-sample
kernels; one multiply-add is one FLOP. The work is in
``mmext/analysis/model_complexity.py`` and ``mmext/analysis/flops.py``.
"""
import argparse
import os.path as osp
import sys

import mmext  # noqa: F401  (stack fixes)
from mmext.analysis.model_complexity import model_complexity, render, write_json
from mmext.utils.config import DictAction
from mmext.utils.errors import MMExtError, friendly_errors


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Params and FLOPs of a config')
    parser.add_argument('config', help='config file')
    parser.add_argument('--shape', type=int, nargs='+', metavar='SIZE',
                        help='input H W, or one size for a square (default: 800 1333 for '
                        'detection, 512 512 for segmentation, 224 224 with --backbone-only)')
    parser.add_argument('--backbone-only', action='store_true',
                        help='trace model.backbone alone')
    parser.add_argument('--json', metavar='OUT', help='also write the results as JSON')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config keys, e.g. model.backbone.arch=b1')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    shape = args.shape
    if shape is not None:
        if len(shape) > 2:
            raise MMExtError(f'--shape takes H W or one size, got {len(shape)} numbers')
        shape = (shape[0], shape[-1])
    result = model_complexity(args.config, shape, backbone_only=args.backbone_only,
                              cfg_options=args.cfg_options, root=osp.abspath('.'))
    print(render(result), end='')
    if args.json:
        write_json(result, args.json)
    return 0


if __name__ == '__main__':
    with friendly_errors('get_flops'):
        sys.exit(main())
