"""Generate docs/model_zoo.md from the configs and the metadata files.

    python tools/analysis_tools/model_zoo.py            # (re)write docs/model_zoo.md
    python tools/analysis_tools/model_zoo.py --check    # exit 1 + diff if it is stale
    python tools/analysis_tools/model_zoo.py --out PATH # write elsewhere

One row per config under configs/<design>/: params and FLOPs of the backbone
computed at 1x3x224x224 (each distinct backbone once), published figures from
docs/published.yml (each with its source) and local figures from
docs/local_results.yml (with date, seed, machine, commit and command). The same
run also regenerates (or, with --check, checks) the ``local-results`` blocks of
docs/*.md and docs/designs/*.md from docs/local_results.yml, the one place local
figures are typed. The work is in ``mmext/analysis/model_zoo.py``.
"""
import argparse
import os.path as osp
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)  # run from a checkout

import mmext  # noqa: E402,F401  (stack fixes)
from mmext.analysis import model_zoo  # noqa: E402
from mmext.utils.errors import friendly_errors  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Generate docs/model_zoo.md')
    parser.add_argument('--check', action='store_true',
                        help='write nothing; exit 1 and print a diff when the page is stale')
    parser.add_argument('--out', default=osp.join(ROOT, model_zoo.PAGE),
                        help='the page (default: docs/model_zoo.md)')
    parser.add_argument('--published',
                        help=f'published figures (default: {model_zoo.PUBLISHED_FILE})')
    parser.add_argument('--local', help=f'local results (default: {model_zoo.LOCAL_FILE})')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    configs = model_zoo.list_configs(ROOT)
    print(f'{len(configs)} configs', file=sys.stderr)
    bar = None

    def progress():
        nonlocal bar
        if bar is not None:
            bar.update()

    zoo_configs = [model_zoo.read_config(p) for p in configs]
    n = model_zoo.distinct_costs(zoo_configs)
    print(f'{n} distinct backbones to count', file=sys.stderr)
    if sys.stderr.isatty():
        from mmengine.utils import ProgressBar
        bar = ProgressBar(n, file=sys.stderr)
    published, local = model_zoo.load_metadata(configs, ROOT, args.published, args.local)
    rows = model_zoo.build_rows(zoo_configs, published, local, progress=progress)
    pub_name = osp.relpath(args.published or osp.join(ROOT, model_zoo.PUBLISHED_FILE), ROOT)
    loc_name = osp.relpath(args.local or osp.join(ROOT, model_zoo.LOCAL_FILE), ROOT)
    page = model_zoo.render_page(rows, pub_name, loc_name, local)
    status = 0
    pages = {args.out: page}
    pages.update(model_zoo.local_pages(ROOT, local))
    for path, text in pages.items():
        rel = osp.relpath(path, ROOT)
        diff = model_zoo.diff_page(text, path, ROOT)
        if args.check:
            if diff:
                print(diff, end='')
                print(f'{rel} is stale; run python tools/analysis_tools/model_zoo.py')
                status = 1
            else:
                print(f'{rel} is current')
        else:
            if diff:
                model_zoo.write_page(text, path)
            print(f'{"wrote" if diff else "unchanged:"} {rel}')
    print(f'{len(rows)} configs')
    sys.stdout.flush()
    print(f'({time.perf_counter() - start:.1f} s)', file=sys.stderr)
    return status


if __name__ == '__main__':
    with friendly_errors('model_zoo'):
        sys.exit(main())
