"""Convert an official classification checkpoint of a design to mmext's layout.

    python tools/model_converters/convert_official.py VAN van_b2.pth van_b2_mmext.pth

TYPE is the registered backbone name (``VAN``, ``MogaNet``, ``HorNet``, ...,
as in ``type='mmext.<TYPE>'``). The output holds the backbone weights under
``state_dict`` with the classifier removed; point a backbone's
``init_cfg=dict(type='Pretrained', checkpoint=OUT)`` at it. Converting is
optional: the backbones convert an official file on the fly when it is given
to ``init_cfg`` directly. A ``--arch`` builds the model once to check that
every key fits and to adapt shapes stored at the training resolution.
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('type', help="registered backbone name, e.g. VAN (or 'mmext.VAN')")
    parser.add_argument('src', help='official checkpoint (path or URL)')
    parser.add_argument('dst', help='output path (.pth)')
    parser.add_argument('--arch', help='variant to check the converted weights against; '
                        'also adapts resolution-dependent shapes to this model')
    parser.add_argument('--cfg', nargs='*', default=[], metavar='KEY=VALUE',
                        help='extra backbone arguments for --arch (Python literals)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import ast

    import torch

    import mmext  # noqa: F401
    from mmext.models.backbones.base_backbone import DenseBackbone, read_state_dict
    from mmext.registry import MODELS
    from mmext.utils.errors import MMExtError, friendly_errors

    with friendly_errors():
        name = args.type.split('.')[-1]
        cls = MODELS.get(name)
        if cls is None or not (isinstance(cls, type) and issubclass(cls, DenseBackbone)):
            known = sorted(k for k, v in MODELS.module_dict.items()
                           if isinstance(v, type) and issubclass(v, DenseBackbone))
            raise MMExtError(f'{args.type} is not an mmext dense backbone (known: '
                             f"{', '.join(known)})")
        state_dict = read_state_dict(args.src)
        if args.arch:
            extra = {}
            for item in args.cfg:
                key, _, value = item.partition('=')
                extra[key] = ast.literal_eval(value)
            model = cls(arch=args.arch, **extra)
            converted = model.to_model_state_dict(state_dict)
            own = model.state_dict()
            bad = [k for k, v in converted.items() if k in own and v.shape != own[k].shape]
            if bad:
                raise MMExtError(f'{len(bad)} tensors do not fit {name} arch={args.arch}: '
                                 f"{', '.join(bad[:4])}")
            missing = sorted(set(own) - set(converted))
            unexpected = sorted(set(converted) - set(own))
            print(f'{len(own) - len(missing)}/{len(own)} tensors of {name}-{args.arch} '
                  f'converted; missing: {missing or "none"}; unexpected: {unexpected or "none"}')
        else:
            converted = {k: v for k, v in cls.convert_official(state_dict).items()
                         if not k.startswith(cls.official_drop_prefixes)}
            print(f'{len(converted)} tensors converted ({len(state_dict) - len(converted)} '
                  'classifier tensors dropped)')
        os.makedirs(osp.dirname(osp.abspath(args.dst)), exist_ok=True)
        torch.save(dict(state_dict=converted,
                        meta=dict(converted_from=str(args.src), design=name, arch=args.arch)),
                   args.dst)
        print(f'saved {args.dst}')


if __name__ == '__main__':
    main()
