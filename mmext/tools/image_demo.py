"""Run a trained detector or segmentor on one's own images and save the drawings.

    python -m mmext infer IMAGE [IMAGE ...] CONFIG CHECKPOINT [--out-dir DIR]
                         [--score-thr T] [--device DEV] [--embedded {demo,smoke}]
                         [--allow-partial] [--cfg-options k=v ...]

``tools/image_demo.py`` takes the same arguments. IMAGE is a file or a folder.
mmdet configs go through mmdet's ``DetInferencer`` (boxes, and masks for
instance segmentation), mmseg configs through ``MMSegInferencer`` (the
segmentation map over the image); the drawings are written to
``OUT_DIR/vis/<image name>`` and the raw predictions to ``OUT_DIR/preds/``
(mmdet, JSON) or ``OUT_DIR/pred/`` (mmseg, label PNGs). Class names and
palette come from the checkpoint's ``dataset_meta``, so a model trained with
``--embedded`` draws the embedded classes. Pass ``--embedded`` here too when
the checkpoint was trained with it: the heads then have the embedded number of
classes.
"""
import argparse
import os.path as osp
import types

import mmext  # noqa: F401  (stack fixes before anything loads a checkpoint)
from mmext.utils.checkpoint import load_matching_checkpoint
from mmext.utils.config import DictAction, load_config, register_library
from mmext.utils.errors import MMExtError, friendly_errors


def parse_args(argv=None, prog=None):
    parser = argparse.ArgumentParser(
        prog=prog, description='Draw the predictions of a detector or segmentor on images')
    parser.add_argument('images', nargs='+', help='image files or folders of images')
    parser.add_argument('config', help='the config: a file or mmext::<folder>/<config>.py')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out-dir', default='work_dirs/image_demo',
                        help='where the drawings (vis/) and predictions go')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='mmdet: draw the boxes / masks scoring at least this')
    parser.add_argument('--opacity', type=float, default=0.8,
                        help='mmseg: opacity of the segmentation map over the image')
    parser.add_argument('--device', help='cpu, cuda, cuda:1, ... (default: cuda if available)')
    parser.add_argument(
        '--embedded', nargs='?', const='demo', choices=['demo', 'smoke'],
        help='the checkpoint was trained with --embedded (of this preset)')
    parser.add_argument(
        '--allow-partial', action='store_true',
        help='run even if the checkpoint misses some model weights or has extra ones')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, e.g. model.test_cfg.max_per_img=10')
    return parser.parse_args(argv)


def build_inferencer(config, checkpoint, device=None, embedded=None, cfg_options=None,
                     strict=True):
    """mmdet's ``DetInferencer`` or mmseg's ``MMSegInferencer`` for a config
    and checkpoint, with mmext's components registered first.

    Args:
        config (str): config file or ``mmext::`` name.
        checkpoint (str): checkpoint file.
        device (str, optional): torch device; the inferencer's default if None.
        embedded (str, optional): embedded preset the checkpoint was trained with.
        cfg_options (dict, optional): config overrides.
        strict (bool): a checkpoint whose keys differ from the model's is an
            error (the inferencers would only warn and draw random predictions).

    Returns:
        tuple: ``(inferencer, library)`` with library ``'mmdet'`` or ``'mmseg'``.

    Raises:
        MMExtError: missing checkpoint, or with ``strict`` a mismatching one.
    """
    if not osp.isfile(checkpoint):
        raise MMExtError(f'checkpoint file not found: {checkpoint}')
    # ``embedded`` only resizes the model's heads and pipeline here; no data
    # is read, so none is generated.
    cfg = load_config(config, cfg_options, embedded)
    lib = register_library(cfg)
    if lib == 'mmdet':
        from mmdet.apis import DetInferencer as Inferencer
        extra = dict(show_progress=False)
    else:
        from mmseg.apis import MMSegInferencer as Inferencer
        extra = {}
    inferencer = Inferencer(model=cfg, weights=checkpoint, device=device, **extra)
    # The key check of tools/test.py; it reloads the same weights, and the
    # class names / palette the inferencer took from the checkpoint stay.
    meta = inferencer.model.dataset_meta
    load_matching_checkpoint(types.SimpleNamespace(model=inferencer.model), checkpoint,
                             strict=strict)
    inferencer.model.dataset_meta = meta
    return inferencer, lib


def run(images, inferencer, lib, out_dir, score_thr=0.3, opacity=0.8):
    """Predict and draw ``images`` (files or folders).

    Returns:
        dict: the inferencer's result, ``predictions`` holding one entry per
        image: mmdet's dict (``bboxes`` in pixels x1y1x2y2, ``scores``,
        ``labels``, RLE ``masks``), mmseg's (H, W) label array.

    Raises:
        MMExtError: an image path does not exist.
    """
    missing = [p for p in images if not osp.exists(p)]
    if missing:
        raise MMExtError(f'image not found: {missing[0]}')
    inputs = images[0] if len(images) == 1 else list(images)
    if lib == 'mmdet':
        return inferencer(inputs, out_dir=out_dir, pred_score_thr=score_thr, no_save_pred=False)
    result = inferencer(inputs, out_dir=out_dir, opacity=opacity)
    if not isinstance(result['predictions'], list):  # mmseg unwraps a single image
        result['predictions'] = [result['predictions']]
    return result


def main(argv=None, prog=None):
    args = parse_args(argv, prog)
    with friendly_errors('image_demo'):
        inferencer, lib = build_inferencer(args.config, args.checkpoint, args.device,
                                           args.embedded, args.cfg_options,
                                           strict=not args.allow_partial)
        run(args.images, inferencer, lib, args.out_dir, args.score_thr, args.opacity)
        print(f'drawings saved to {osp.join(args.out_dir, "vis")}')


if __name__ == '__main__':
    main()
