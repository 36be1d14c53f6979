"""Evaluate a checkpoint with an mmdet or mmseg config (box/mask mAP, mIoU).

    python -m mmext test CONFIG CHECKPOINT [--work-dir DIR] [--embedded {demo,smoke}]
                         [--out FILE] [--show-dir DIR] [--show] [--wait-time S] [--tta]
                         [--allow-partial] [--cfg-options k=v ...]

``tools/test.py`` takes the same arguments. ``--show-dir``, ``--show``,
``--wait-time`` and ``--tta`` are mmdet's and mmseg's own flags of their
``tools/test.py``, applied the way each library applies them.
"""
import argparse
import os
import os.path as osp
import sys

import mmext  # noqa: F401  (stack fixes before anything loads a checkpoint)
from mmext.utils.checkpoint import load_matching_checkpoint
from mmext.utils.config import (add_run_args, build_runner, check_data, ensure_embedded_data,
                                parse_run_args, prepare_run_cfg)
from mmext.utils.embedded import innermost_dataset
from mmext.utils.errors import MMExtError, friendly_errors


def parse_args(argv=None, prog=None):
    parser = argparse.ArgumentParser(prog=prog, description='Test (and evaluate) a model')
    parser.add_argument('config', help='test config: a file or mmext::<folder>/<config>.py')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out', help='mmdet: dump predictions to this .pkl file; mmseg: write '
                        'prediction PNGs to this folder')
    parser.add_argument(
        '--show-dir', help="draw every prediction with the library's visualizer and save the "
        'images in this folder (mmdet: DIR/<image>, ground truth left, prediction right; '
        'mmseg: DIR/vis_data/vis_image/test_<image>_0.png)')
    parser.add_argument('--show', action='store_true',
                        help='show every drawn prediction in a window (needs a display)')
    parser.add_argument('--wait-time', type=float, default=2,
                        help='seconds each image is shown with --show')
    parser.add_argument('--tta', action='store_true',
                        help="test-time augmentation with the config's tta_model and tta_pipeline")
    parser.add_argument(
        '--allow-partial', action='store_true',
        help='evaluate even if the checkpoint misses some model weights or has extra ones')
    return parse_run_args(add_run_args(parser), argv)


def has_display():
    """Whether a window can be opened: on Linux an X11 or Wayland display."""
    if not sys.platform.startswith('linux'):
        return True
    return bool(os.environ.get('DISPLAY') or os.environ.get('WAYLAND_DISPLAY'))


def set_visualization(cfg, lib, show_dir=None, show=False, wait_time=2):
    """Turn on the config's visualization hook for testing, as mmdet's and
    mmseg's ``tools/test.py`` do, but drawing every test image (mmseg's hook
    draws every 50th by default) and with ``show_dir`` made absolute, so both
    libraries write where the user said.

    Raises:
        MMExtError: ``show`` without a display, or no visualization hook.
    """
    if show and not has_display():
        raise MMExtError('--show needs a display ($DISPLAY is not set); save the drawn '
                         'predictions with --show-dir DIR instead')
    hook = cfg.get('default_hooks', {}).get('visualization')
    if hook is None:
        raise MMExtError("--show / --show-dir need default_hooks.visualization in the config "
                         "(mmdet: dict(type='DetVisualizationHook'), mmseg: "
                         "dict(type='SegVisualizationHook'))")
    hook.update(draw=True, interval=1)
    if show:
        hook.update(show=True, wait_time=wait_time)
    if show_dir:
        show_dir = osp.abspath(show_dir)
        if lib == 'mmdet':
            hook.test_out_dir = show_dir
        else:
            cfg.visualizer.save_dir = show_dir
    return cfg


def set_tta(cfg):
    """Test with the config's test-time augmentation: ``tta_pipeline`` feeds
    the test set and ``tta_model`` wraps the model (mmdet's RetinaNet and
    mmseg's ADE20K configs define both).

    Raises:
        MMExtError: the config has no ``tta_model`` or no ``tta_pipeline``.
    """
    missing = [k for k in ('tta_model', 'tta_pipeline') if not cfg.get(k)]
    if missing:
        raise MMExtError(f"--tta needs tta_model and tta_pipeline in the config, and it has no "
                         f"{' and no '.join(missing)}; test without --tta or add them (mmdet's "
                         "retinanet/retinanet_tta.py is an example)")
    innermost_dataset(cfg.test_dataloader.dataset).pipeline = cfg.tta_pipeline
    tta_model = cfg.tta_model.copy()
    tta_model.module = cfg.model
    cfg.model = tta_model
    return cfg


def main(argv=None, prog=None):
    args = parse_args(argv, prog)
    with friendly_errors('test'):
        cfg, lib = prepare_run_cfg(args)
        # Loading is done below, with a key check, instead of by the runner.
        cfg.load_from = None
        cfg.resume = False
        if args.show or args.show_dir:
            set_visualization(cfg, lib, args.show_dir, args.show, args.wait_time)
        if args.tta:
            set_tta(cfg)
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
