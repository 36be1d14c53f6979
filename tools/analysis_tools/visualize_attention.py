"""Attention / gate maps of a config's model over input images, one PNG grid
per image.

    python tools/analysis_tools/visualize_attention.py CONFIG [IMAGE ...] [--out DIR]
        [--checkpoint CKPT] [--shape H W] [--modules REGEX] [--max-maps N]
        [--cfg-options KEY=VALUE ...]

Every module of the model whose class declares ``attention_maps`` (today SE,
ECA, CBAM, LKA, MogaNet's gate, SK, ODConv, GnConv; see
``mmext/models/layers/protocols.py``) is hooked during one forward pass of the
backbone (and neck); the grid (drawn with matplotlib) shows the input, then
each spatial map as a heatmap over the image and each set of channel weights as
a bar plot, in the order the modules ran. Without IMAGE the first embedded validation image is used; without
--checkpoint the weights are untrained, so the maps show the wiring, not what a
trained model attends to. The work is in ``mmext/analysis/attention_maps.py``.
"""
import argparse
import sys

import mmext  # noqa: F401  (stack fixes, the mmext scope)
from mmext.utils.config import DictAction
from mmext.utils.errors import friendly_errors


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Attention / gate maps of a config\'s model over images, as PNG grids')
    parser.add_argument('config', help='config file')
    parser.add_argument('images', nargs='*', metavar='IMAGE',
                        help='input images (default: the first embedded validation image)')
    parser.add_argument('--out', default='work_dirs/attention_maps',
                        help='output folder (default work_dirs/attention_maps)')
    parser.add_argument('--checkpoint', help='weights to load (default: untrained)')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        help='resize every image to H x W first (default: keep its size)')
    parser.add_argument('--modules', metavar='REGEX',
                        help='only modules whose name matches REGEX (re.search)')
    parser.add_argument('--max-maps', type=int, default=32,
                        help='draw at most N maps per image (default 32)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config keys, KEY=VALUE')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from mmext.analysis.attention_maps import visualize
    results = visualize(args.config, args.images, out_dir=args.out, checkpoint=args.checkpoint,
                        shape=args.shape, modules=args.modules, max_maps=args.max_maps,
                        cfg_options=args.cfg_options)
    for out_file, records, layout in results:
        designs = sorted({r.design for r in records})
        skipped = f', {layout.skipped} more not drawn (--max-maps)' if layout.skipped else ''
        print(f"{out_file}: {layout.records} maps of {', '.join(designs)} in "
              f'{layout.num_tiles} tiles{skipped}')
    if args.checkpoint is None:
        print('note: no --checkpoint, the maps come from untrained weights')
    return 0


if __name__ == '__main__':
    with friendly_errors('visualize_attention'):
        sys.exit(main())
