"""Parameters and FLOPs of the backbones of mmdet / mmseg configs.

    python tools/analysis_tools/backbone_costs.py CONFIG [CONFIG ...]  # print a table
    python tools/analysis_tools/backbone_costs.py --update-docs  # rewrite docs/designs/*.md tables
    python tools/analysis_tools/backbone_costs.py --check  # exit 1 + diff if a table is stale

FLOPs at 1x3x224x224 by mmengine's FlopAnalyzer (one multiply-add = one FLOP);
"+ ImageNet classifier" adds a 1000-class linear layer on the last stage, the
unit of the papers' parameter counts. The first config is the reference of the
difference columns. The work is in ``mmext/analysis/backbone_costs.py``.
"""
import argparse
import os.path as osp
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)  # run from a checkout

import mmext  # noqa: E402,F401  (stack fixes)
from mmext.analysis.backbone_costs import (backbone_cost, check_docs, doc_files,  # noqa: E402
                                           render_table, update_docs)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Backbone parameters and FLOPs of configs')
    parser.add_argument('configs', nargs='*', help='config files (first = reference row)')
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument('--update-docs', action='store_true',
                      help='regenerate every backbone-costs table in docs/designs/*.md')
    mode.add_argument('--check', action='store_true',
                      help='exit 1 and print a diff when a committed table is stale')
    parser.add_argument('--docs', nargs='+', metavar='MD',
                        help='Markdown files for --update-docs / --check '
                        '(default: docs/designs/*.md)')
    args = parser.parse_args(argv)
    if not (args.configs or args.update_docs or args.check):
        parser.error('give config files, --update-docs or --check')
    return args


def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    status = 0
    if args.configs:
        print(render_table([backbone_cost(c, root=osp.abspath('.')) for c in args.configs]),
              end='')
    files = args.docs or doc_files(ROOT)
    if args.update_docs:
        changed = update_docs(files, root=ROOT)
        for path in changed:
            print(f'updated {osp.relpath(path, ROOT)}')
        print(f'{len(files)} files, {len(changed)} changed')
    elif args.check:
        stale = check_docs(files, root=ROOT)
        for diff in stale.values():
            print(diff, end='')
        if stale:
            print(f'{len(stale)} of {len(files)} files have stale backbone-costs tables; '
                  'run tools/analysis_tools/backbone_costs.py --update-docs')
            status = 1
        else:
            print(f'{len(files)} files, all backbone-costs tables current')
    sys.stdout.flush()
    print(f'({time.perf_counter() - start:.1f} s)', file=sys.stderr)
    return status


if __name__ == '__main__':
    sys.exit(main())
