"""Convert an official classification checkpoint of a design to mmext's layout.

    python -m mmext convert VAN van_b2.pth van_b2_mmext.pth --arch b2
    python -m mmext convert SE-ResNet se_resnet50.pth se_r50_mmext.pth \\
        --config configs/se/retinanet_r50-se_fpn_1x_coco.py

``tools/model_converters/convert_official.py`` of a checkout takes the same
arguments. TYPE is a design with an official layout (``--help`` lists every
accepted name, discovered by :func:`mmext.models.official_layouts.official_layouts`
from each design's declaration in its own file): a registered dense backbone or
``SDAResNet`` (``mmext.`` optional), a ResNet layout of a plugin / convolution
design (``SE-ResNet``, ...), or ``PVTv2`` (MMDetection's class, mmdet's
converter). The source may be a training script's checkpoint
(weights under ``state_dict`` / ``model`` / ``model_state`` next to
``epoch``, ``args``, ...). The output holds only the backbone weights, under
``state_dict`` with the classifier removed; point a backbone's
``init_cfg=dict(type='Pretrained', checkpoint=OUT)`` at it. The dense
backbones also convert an official file on the fly when it is given to
``init_cfg`` directly. ``--arch`` (a variant; SDAResNet: the depth) or
``--config`` (any config whose backbone takes the weights) builds the model
once to check that every tensor fits and, for the dense backbones, to adapt
shapes stored at the training resolution.

The file is read with weights-only unpickling. A file holding other Python
objects than tensors, plain containers and the metadata mmext allow-lists is
refused with the object's name; ``--no-weights-only`` reads it anyway, which
runs code from the file: only for a file you trust. The output is a plain
file that loads without the flag.
"""
import argparse
import os
import os.path as osp


def parse_args(argv=None, prog=None):
    from mmext.models.official_layouts import official_layouts

    # Discovered from the designs' own declarations, so that a new design
    # shows up here without editing this file.
    names = ', '.join(sorted(official_layouts(), key=str.lower))
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split('\n\n')[0])
    parser.add_argument('type', help=f"design with an official layout, one of: {names} "
                        "(case, '-' and '_' ignored; 'mmext.' optional)")
    parser.add_argument('src', help='official checkpoint (path or URL)')
    parser.add_argument('dst', help='output path (.pth)')
    check = parser.add_mutually_exclusive_group()
    check.add_argument('--arch', help='variant to check the converted weights against '
                       '(SDAResNet: the depth); also adapts resolution-dependent shapes')
    check.add_argument('--config', help='config whose model.backbone the converted weights '
                       'are checked against')
    parser.add_argument('--cfg', nargs='*', default=[], metavar='KEY=VALUE',
                        help='backbone arguments (Python literals) added to --arch or '
                        "changed in --config's model.backbone")
    parser.add_argument('--no-weights-only', dest='weights_only', action='store_false',
                        help='unpickle any Python object in SRC (runs code from the file: '
                        'only for a file you trust)')
    return parser.parse_args(argv)


def _config_backbone(path, overrides):
    """Build ``model.backbone`` of the config at ``path`` (with ``overrides``
    of its arguments) in the config's library scope, without changing the
    process-wide default scope."""
    from importlib import import_module

    from mmengine.registry import DefaultScope

    import mmext.registry  # noqa: F401  (the mmext scope)
    from mmext.utils.config import library_of, load_config

    cfg = load_config(path, {f'model.backbone.{k}': v for k, v in overrides.items()} or None)
    lib = library_of(cfg)
    import_module(f'{lib}.utils').register_all_modules(init_default_scope=False)
    with DefaultScope.overwrite_default_scope(lib):
        return import_module(f'{lib}.registry').MODELS.build(cfg.model.backbone)


def main(argv=None, prog=None):
    """Convert ``SRC`` to ``DST`` as the command line ``argv`` says (see the
    module docstring); ``prog`` names the command in usage and error lines.
    Known errors exit with status 1 and one ``<prog>: error: ...`` line."""
    args = parse_args(argv, prog)
    import ast

    import torch

    import mmext  # noqa: F401
    from mmext.models.backbones.base_backbone import DenseBackbone
    from mmext.models.official_layouts import check_against, get_official_layout
    from mmext.utils.checkpoint import read_state_dict
    from mmext.utils.errors import friendly_errors

    # 'convert_official' when run as the script, so its error lines read the same
    # from a checkout as before.
    with friendly_errors(prog=prog or 'convert_official'):
        layout = get_official_layout(args.type)
        state_dict = read_state_dict(args.src, weights_only=args.weights_only)
        extra = {}
        for item in args.cfg:
            key, _, value = item.partition('=')
            extra[key] = ast.literal_eval(value)
        model = None
        if args.arch:
            model = layout.build(args.arch, **extra)
        elif args.config:
            model = _config_backbone(args.config, extra)
        if isinstance(model, DenseBackbone):
            # Also recognises a file already in mmext's layout and adapts shapes.
            converted = model.to_model_state_dict(state_dict)
        else:
            converted = layout.convert(state_dict)
        if model is not None:
            missing, unexpected = check_against(model, converted)
            # Keys a classification checkpoint does not hold by design (e.g. BN
            # counters of old torchvision files): stated once, not listed as missing.
            expected = []
            if isinstance(model, DenseBackbone):
                missing, expected = model.split_missing(missing)
            own = model.state_dict()
            absent = (f' ({len(expected)} keys not in classification checkpoints, initialised '
                      f"as configured: {', '.join(model.expected_missing)})" if expected else '')
            print(f'{len(own) - len(missing) - len(expected)}/{len(own)} tensors of '
                  f'{type(model).__name__} converted{absent}; missing: {missing or "none"}; '
                  f'unexpected: {unexpected or "none"}')
        else:
            print(f'{len(converted)} tensors converted from {len(state_dict)} (classifier '
                  'dropped; pass --arch or --config to check them against a model)')
        os.makedirs(osp.dirname(osp.abspath(args.dst)), exist_ok=True)
        torch.save(dict(state_dict=converted,
                        meta=dict(converted_from=str(args.src), design=layout.name,
                                  arch=args.arch, config=args.config)),
                   args.dst)
        print(f'saved {args.dst}')


if __name__ == '__main__':
    main()
