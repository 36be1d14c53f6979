"""Draw a config's ground truth on its images, after the split's pipeline.

    python tools/analysis_tools/browse_dataset.py CONFIG [--split train|val|test]
        [--num N] [--output-dir DIR] [--show] [--show-interval S]
        [--preset demo|smoke] [--data-root DIR] [--full-data] [--cfg-options k=v ...]

Detection configs get boxes, masks and class names (mmdet's
DetLocalVisualizer), segmentation configs the label map (mmseg's
SegLocalVisualizer). The config is switched to the embedded data as
``tools/train.py --embedded`` does (generated on first use); ``--full-data``
browses the config's own COCO / ADE20K paths instead. PNGs go to
``work_dirs/browse_dataset/<config>/<split>/`` unless --output-dir says
otherwise. The work is in ``mmext/analysis/browse_dataset.py``.
"""
import argparse
import sys

import mmext  # noqa: F401  (stack fixes, the mmext scope)
from mmext.utils.config import DictAction
from mmext.utils.errors import friendly_errors


def parse_args(argv=None):
    from mmext.analysis.browse_dataset import SPLITS
    parser = argparse.ArgumentParser(
        description="Draw a config's ground truth on its images after the pipeline")
    parser.add_argument('config', help='mmdet or mmseg config file')
    parser.add_argument('--split', default='train', choices=SPLITS,
                        help='which dataloader to browse (default train: shows augmentations)')
    parser.add_argument('--num', type=int, help='draw the first N images (default all)')
    parser.add_argument('--output-dir', help='folder for the PNGs (default '
                        'work_dirs/browse_dataset/<config>/<split>)')
    parser.add_argument('--show', action='store_true', help='also open a window per image')
    parser.add_argument('--not-show', action='store_true',
                        help="do not open windows (the default; accepted as in mmdet's tool)")
    parser.add_argument('--show-interval', type=float, default=2.0,
                        help='seconds each window stays open (default 2)')
    parser.add_argument('--preset', default='demo', choices=['demo', 'smoke'],
                        help='embedded preset, as tools/train.py --embedded (default demo)')
    parser.add_argument('--data-root', help='embedded data folder (default data/embedded)')
    parser.add_argument('--full-data', action='store_true',
                        help="browse the config's own dataset (COCO / ADE20K paths), not the "
                        'embedded data')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config keys, KEY=VALUE')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from mmext.analysis.browse_dataset import browse, default_output_dir, display_available
    show = args.show and not args.not_show
    if show and not display_available():
        print('note: no display (DISPLAY is not set); saving the images only')
        show = False
    out_dir = args.output_dir or default_output_dir(args.config, args.split)

    def report(record):
        print(f'{record.out_file or record.img_path}: {record.describe()}')

    results = browse(args.config, args.split, out_dir, num=args.num, show=show,
                     wait_time=args.show_interval, preset=args.preset, data_root=args.data_root,
                     full_data=args.full_data, cfg_options=args.cfg_options, progress=report)
    source = 'config data' if args.full_data else f'embedded data, {args.preset} preset'
    print(f'{len(results)} {args.split} images ({source}) drawn to {out_dir}')
    return 0


if __name__ == '__main__':
    with friendly_errors('browse_dataset'):
        sys.exit(main())
