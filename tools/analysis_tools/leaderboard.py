"""A leaderboard of the runs in mmengine work dirs.

    python tools/analysis_tools/leaderboard.py WORK_DIR [WORK_DIR ...] [--out DIR]
    python tools/analysis_tools/leaderboard.py 'work_dirs/compare/*' --out work_dirs/lb
    python tools/analysis_tools/leaderboard.py work_dirs/compare --baseline CONFIG
    python tools/analysis_tools/leaderboard.py work_dirs/compare --resources

Writes DIR/leaderboard.md (one table: method, backbone, design, params, FLOPs,
latency, box AP / mask AP / mIoU as mean ± std over seeds, config link; the
runs with their seed and environment; the missing / crashed / unfinished runs),
DIR/accuracy_vs_flops.png and DIR/curves.png. With --baseline, every other
config against that one (difference paired by seed, 95% interval, cost
ratios); always, where the compared configs differ besides the design (host
class, schedule, image size). With --resources (or when a run measured its
peak memory, ``train --peak-memory``), the resource view: accuracy, params,
FLOPs, size, BOPs, peak training memory and latency per config. The work is in
``mmext/analysis/leaderboard.py``.
"""
import argparse
import os.path as osp
import sys
import time

import mmext  # noqa: F401  (stack fixes)
from mmext.analysis.leaderboard import build_leaderboard
from mmext.utils.errors import friendly_errors


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Leaderboard of training runs')
    parser.add_argument('work_dirs', nargs='+',
                        help='work dirs or folders of work dirs (globs accepted)')
    parser.add_argument('--out', default=osp.join('work_dirs', 'leaderboard'),
                        help='output folder (default work_dirs/leaderboard)')
    parser.add_argument('--no-costs', action='store_true',
                        help='skip the backbone params / FLOPs (no model is built)')
    parser.add_argument('--baseline', metavar='CONFIG',
                        help='config (path or name) to report every other config against: '
                             'difference paired by seed with a 95%% interval, cost ratios')
    parser.add_argument('--resources', action='store_true', default=None,
                        help='add the resource view (shown anyway when a run measured its '
                             'peak memory)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    with friendly_errors('leaderboard'):
        result = build_leaderboard(args.work_dirs, args.out, with_costs=not args.no_costs,
                                   baseline=args.baseline, resources=args.resources)
    runs = result['runs']
    with open(result['files'][0], encoding='utf-8') as f:
        print(f.read(), end='')
    bad = sum(r.status != 'finished' for r in runs)
    print(f'{len(runs)} runs ({bad} missing / crashed / unfinished) in '
          f"{len(result['entries'])} rows; wrote " + ', '.join(result['files']))
    print(f'({time.perf_counter() - start:.1f} s)', file=sys.stderr)
    return 0


if __name__ == '__main__':
    sys.exit(main())
