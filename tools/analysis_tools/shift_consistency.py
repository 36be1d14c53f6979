"""Shift consistency of a backbone's last-stage features under small input
shifts (the property CMod / anti-aliased stems aim at).

    python tools/analysis_tools/shift_consistency.py CONFIG [CONFIG ...]
        [--checkpoints CKPT ...] [--images GLOB] [--num-images 16] [--size 224]
        [--shifts 1 2 3] [--cfg-options k=v ...]

For every image (resized so that its shorter side is ``size + max(shifts)``,
then center-cropped to a square of that side), the backbone of each config
sees the ``size x size`` window at offset (0, 0) and the windows shifted by
``d`` pixels down and right, for every ``d`` in ``--shifts``. The last stage's
map is averaged over space (a ``(C, )`` descriptor per window) and compared
with the unshifted one:

* ``cos``: cosine similarity of the descriptors (1 = unchanged);
* ``rel. change``: ``||f(x_d) - f(x_0)|| / ||f(x_0)||`` (0 = unchanged).

Printed per shift and averaged over the shifts, one row per config, in eval
mode (running statistics; ``--calibrate`` first sets them to the statistics
of the unshifted windows, which untrained norms otherwise lack). Without ``--checkpoints`` the backbones are
untrained (their init): figures of random weights say little about trained
ones, the paper's claim being about trained networks. Images: ``--images``
(default: the embedded data's COCO images, ``tools/generate_data.py``),
normalised with the config's ``data_preprocessor`` mean / std, RGB.
"""
import argparse
import glob
import logging
import os.path as osp
import sys

import torch
import torch.nn.functional as F

import mmext  # noqa: F401  (stack fixes)
from mmext.utils.config import DictAction
from mmext.utils.errors import MMExtError, friendly_errors

DEFAULT_IMAGES = 'data/embedded/coco/*2017/*.jpg'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Shift consistency of last-stage features')
    parser.add_argument('configs', nargs='+', help='config files (their model.backbone)')
    parser.add_argument('--checkpoints', nargs='+', default=None,
                        help='one checkpoint per config (backbone.* keys, or a backbone '
                        'state dict); default: untrained')
    parser.add_argument('--images', default=DEFAULT_IMAGES, help='glob of image files')
    parser.add_argument('--num-images', type=int, default=16)
    parser.add_argument('--size', type=int, default=224, help='side of the compared window')
    parser.add_argument('--shifts', type=int, nargs='+', default=[1, 2, 3],
                        help='diagonal shifts in pixels')
    parser.add_argument('--seed', type=int, default=0, help='seed of the untrained init')
    parser.add_argument('--calibrate', action='store_true',
                        help='first set every batch norm\'s running statistics to those of '
                        'the unshifted windows (one training-mode pass, no weight update): '
                        'untrained norms otherwise use their init (mean 0, variance 1)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config keys of every config')
    return parser.parse_args(argv)


def load_images(pattern, num, side, mean, std):
    """``(num, 3, side, side)`` normalised RGB crops of the first ``num``
    images (sorted) matching ``pattern``.

    Raises:
        MMExtError: No image matches.
    """
    import mmcv
    paths = sorted(glob.glob(pattern))[:num]
    if not paths:
        raise MMExtError(f"no image matches '{pattern}' (generate the embedded data with "
                         'python tools/generate_data.py, or pass --images)')
    crops = []
    for path in paths:
        img = torch.from_numpy(mmcv.imread(path, channel_order='rgb').copy()).float()
        img = img.permute(2, 0, 1)[None]
        h, w = img.shape[-2:]
        scale = side / min(h, w)
        img = F.interpolate(img, size=(max(side, round(h * scale)), max(side, round(w * scale))),
                            mode='bilinear', align_corners=False)
        top, left = (img.shape[-2] - side) // 2, (img.shape[-1] - side) // 2
        crops.append(img[..., top:top + side, left:left + side])
    batch = torch.cat(crops)
    return (batch - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def build_backbone(config, cfg_options=None, checkpoint=None):
    """The config's backbone (SyncBN as BN), untrained or from ``checkpoint``,
    and the config's normalisation ``(mean, std)``."""
    from mmengine.logging import MMLogger
    from mmengine.runner import load_checkpoint

    from mmext.analysis.benchmark import build_subject, parse_reference
    from mmext.utils.config import load_config
    subject = build_subject(parse_reference(config, root=osp.abspath('.')), backbone_only=True,
                            root=osp.abspath('.'), cfg_options=cfg_options)
    model = subject.model
    if hasattr(model, 'init_weights'):
        # mmengine logs every initialised tensor at INFO.
        logger = MMLogger.get_current_instance()
        level = logger.level
        logger.setLevel(logging.WARNING)
        try:
            model.init_weights()
        finally:
            logger.setLevel(level)
    if checkpoint:
        load_checkpoint(model, checkpoint, map_location='cpu', revise_keys=[(r'^backbone\.', '')])
    pre = load_config(config, cfg_options).model.get('data_preprocessor', {})
    mean = pre.get('mean', (123.675, 116.28, 103.53))
    std = pre.get('std', (58.395, 57.12, 57.375))
    model.eval()  # mmdet's ResNet.train() returns None, so not chained
    return model, mean, std


@torch.no_grad()
def calibrate_norms(backbone, images):
    """Running statistics of every batch norm := those of ``images`` (a
    cumulative average over one pass); weights unchanged; back to eval."""
    from torch.nn.modules.batchnorm import _BatchNorm
    norms = [m for m in backbone.modules() if isinstance(m, _BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    backbone(images)
    for m in norms:
        m.eval()


@torch.no_grad()
def consistency(backbone, images, size, shifts):
    """Per shift ``d``: (mean cosine similarity, mean relative change) of the
    spatially averaged last-stage map between the window at (0, 0) and the
    window at (d, d)."""
    def descriptor(x):
        return backbone(x)[-1].float().mean((2, 3))

    base = descriptor(images[..., :size, :size])
    out = {}
    for d in shifts:
        moved = descriptor(images[..., d:d + size, d:d + size])
        cos = F.cosine_similarity(base, moved, dim=1).mean().item()
        rel = ((moved - base).norm(dim=1) / base.norm(dim=1).clamp_min(1e-12)).mean().item()
        out[d] = (cos, rel)
    return out


def main(argv=None):
    args = parse_args(argv)
    if args.checkpoints and len(args.checkpoints) != len(args.configs):
        raise MMExtError(f'--checkpoints takes one file per config ({len(args.configs)}), '
                         f'got {len(args.checkpoints)}')
    if min(args.shifts) < 1:
        raise MMExtError('--shifts must be positive pixel counts')
    side = args.size + max(args.shifts)
    header = ['config'] + [f'cos d={d}' for d in args.shifts] + ['mean cos'] + \
        [f'rel. change d={d}' for d in args.shifts] + ['mean rel. change']
    rows = []
    for i, config in enumerate(args.configs):
        torch.manual_seed(args.seed)
        ckpt = args.checkpoints[i] if args.checkpoints else None
        backbone, mean, std = build_backbone(config, args.cfg_options, ckpt)
        images = load_images(args.images, args.num_images, side, mean, std)
        if args.calibrate:
            calibrate_norms(backbone, images[..., :args.size, :args.size])
        result = consistency(backbone, images, args.size, args.shifts)
        cos = [result[d][0] for d in args.shifts]
        rel = [result[d][1] for d in args.shifts]
        rows.append([osp.basename(config)] + [f'{c:.4f}' for c in cos]
                    + [f'{sum(cos) / len(cos):.4f}'] + [f'{r:.4f}' for r in rel]
                    + [f'{sum(rel) / len(rel):.4f}'])
    print(f'{len(images)} images, {args.size}x{args.size} windows, diagonal shifts '
          f'{args.shifts} px, last-stage map averaged over space, eval mode, '
          + ('checkpoints: ' + ', '.join(args.checkpoints) if args.checkpoints
             else f'untrained (init, seed {args.seed})')
          + (', norms calibrated on the unshifted windows' if args.calibrate else ''))
    print('| ' + ' | '.join(header) + ' |')
    print('|' + '---|' * len(header))
    for row in rows:
        print('| ' + ' | '.join(row) + ' |')
    return 0


if __name__ == '__main__':
    with friendly_errors('shift_consistency'):
        sys.exit(main())
