"""Regenerate or check the backbone-costs tables of docs/designs/*.md
(repository maintenance, not part of the mmext package).

    python .dev_scripts/backbone_costs.py --update-docs  # rewrite the tables
    python .dev_scripts/backbone_costs.py --check        # exit 1 + diff if a table is stale
    python .dev_scripts/backbone_costs.py CONFIG [CONFIG ...]  # print one table

A table lives between two markers; the begin marker names the configs of its
rows, in order, relative to the repository root::

    <!-- backbone-costs:begin configs/resnet/retinanet_r50_fpn_1x_coco.py configs/se/... -->
    (generated table)
    <!-- backbone-costs:end -->

Params and FLOPs of each config's backbone at 1x3x224x224 come from
:func:`mmext.analysis.backbone_costs.backbone_cost` (mmengine's FlopAnalyzer
with mmext's handles, one multiply-add = one FLOP); "+ ImageNet classifier"
adds a 1000-class linear layer on the last stage, the unit of the papers'
parameter counts. The first config is the reference of the difference columns.
A table with a low-bit backbone (modules declaring ``weight_bits`` /
``activation_bits``, :mod:`mmext.analysis.low_bit`) adds each row's size at
the real bit-widths, full-precision FLOPs and BOPs; other tables are
unchanged.
"""
import argparse
import difflib
import glob
import os.path as osp
import re
import sys
import time

from mmext.analysis.backbone_costs import INPUT_SHAPE, backbone_cost
from mmext.analysis.low_bit import format_gbops, format_mbytes
from mmext.analysis.model_complexity import format_gflops, format_mparams, markdown_table

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
DOCS_GLOB = osp.join('docs', 'designs', '*.md')
BEGIN = '<!-- backbone-costs:begin'
END = '<!-- backbone-costs:end -->'
# The begin marker on its own line, then anything up to the end marker.
_BLOCK = re.compile(
    r'^(?P<begin><!-- backbone-costs:begin(?P<paths>[^\n]*?)-->)[ \t]*\n(?P<body>.*?)^'
    + re.escape(END), re.S | re.M)


def render_table(costs, input_shape=INPUT_SHAPE):
    """Markdown table of ``costs`` (a list of ``BackboneCost``); the
    differences are against the first row, the reference.

    Returns:
        str: The table and a note on the uncounted ops, ending in a newline.

    Raises:
        ValueError: ``costs`` is empty.
    """
    if not costs:
        raise ValueError('a backbone-costs table needs at least one config')
    shape = 'x'.join(map(str, input_shape))
    ref = costs[0]
    low = any(c.has_low_bit for c in costs)
    rows = []
    for i, c in enumerate(costs):
        if i == 0:
            d_params = d_flops = 'reference'
        else:
            d_params = f'{(c.params - ref.params) / 1e6:+.2f}'
            d_flops = f'{(c.flops - ref.flops) / 1e9:+.2f}'
        low_cells = [format_mbytes(c.effective_bytes) if c.effective_bytes is not None else '-',
                     format_gflops(c.full_precision_flops), format_gbops(c.bops)] if low else []
        rows.append([f'`{c.config}`', c.backbone, format_mparams(c.params),
                     format_mparams(c.imagenet_params), format_gflops(c.flops), d_params,
                     d_flops, *low_cells])
    low_cols = ['size (MB)', f'full-precision FLOPs (G, {shape})',
                f'BOPs (G, {shape})'] if low else []
    table = markdown_table(['config', 'backbone', 'params (M)',
                            'params + ImageNet classifier (M)', f'FLOPs (G, {shape})',
                            'Δ params (M)', 'Δ FLOPs (G)', *low_cols], rows,
                           'llrrrrr' + 'r' * len(low_cols))
    common = set.intersection(*(set(c.uncounted_ops) for c in costs))
    note = ['Traced ops without a FLOP handle (counted as 0): '
            + (', '.join(f'`{op}`' for op in sorted(common)) or 'none') + ' in every row']
    for c in costs:
        extra = sorted(set(c.uncounted_ops) - common)
        if extra:
            note.append(f'; `{c.config}` also ' + ', '.join(f'`{op}`' for op in extra))
    if low:
        note.append('. FLOPs count the low-bit multiply-adds too (the simulated forward runs '
                    'them in FP32); full-precision FLOPs leave them out; BOPs = MACs x '
                    'weight_bits x activation_bits; size at the real bit-widths (low-bit '
                    'weights at weight_bits, the rest at 32 bits; docs/analysis_tools.md)')
    return f'{table}\n\n{"".join(note)}.\n'


def marker_configs(text):
    """The config lists of the tables of a Markdown text, in order.

    Raises:
        ValueError: On a begin marker without its end marker, or one that
            names no config.
    """
    blocks = list(_BLOCK.finditer(text))
    if text.count(BEGIN) != len(blocks) or text.count(END) != len(blocks):
        raise ValueError(f'unbalanced backbone-costs markers: {text.count(BEGIN)} begin, '
                         f'{text.count(END)} end, {len(blocks)} well-formed tables')
    lists = [m['paths'].split() for m in blocks]
    if not all(lists):
        raise ValueError('a backbone-costs:begin marker names no config')
    return lists


def update_markdown(text, cost_fn):
    """``text`` with every table between markers regenerated by
    ``cost_fn(config path) -> BackboneCost``."""
    marker_configs(text)  # validates the markers

    def table(match):
        costs = [cost_fn(p) for p in match['paths'].split()]
        return f"{match['begin']}\n{render_table(costs)}{END}"

    return _BLOCK.sub(table, text)


def doc_files(root=REPO):
    return sorted(glob.glob(osp.join(root, DOCS_GLOB)))


def _cost_fn(root):
    return lambda p: backbone_cost(p, root)


def check_docs(files=None, root=REPO, cost_fn=None):
    """Unified diffs (``{file: diff}``) of the Markdown files whose committed
    tables differ from a fresh computation; empty when all are current."""
    cost_fn = cost_fn or _cost_fn(root)
    stale = {}
    for path in files or doc_files(root):
        with open(path, encoding='utf-8') as f:
            old = f.read()
        new = update_markdown(old, cost_fn)
        if new != old:
            rel = osp.relpath(path, root)
            stale[path] = ''.join(difflib.unified_diff(
                old.splitlines(True), new.splitlines(True), f'a/{rel}', f'b/{rel}'))
    return stale


def update_docs(files=None, root=REPO, cost_fn=None):
    """Regenerate the tables in place; returns the files that changed."""
    cost_fn = cost_fn or _cost_fn(root)
    changed = []
    for path in files or doc_files(root):
        with open(path, encoding='utf-8') as f:
            old = f.read()
        new = update_markdown(old, cost_fn)
        if new != old:
            with open(path, 'w', encoding='utf-8') as f:
                f.write(new)
            changed.append(path)
    return changed


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Backbone-costs tables of docs/designs')
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
    files = args.docs or doc_files()
    if args.update_docs:
        changed = update_docs(files)
        for path in changed:
            print(f'updated {osp.relpath(path, REPO)}')
        print(f'{len(files)} files, {len(changed)} changed')
    elif args.check:
        stale = check_docs(files)
        for diff in stale.values():
            print(diff, end='')
        if stale:
            print(f'{len(stale)} of {len(files)} files have stale backbone-costs tables; '
                  'run python .dev_scripts/backbone_costs.py --update-docs')
            status = 1
        else:
            print(f'{len(files)} files, all backbone-costs tables current')
    sys.stdout.flush()
    print(f'({time.perf_counter() - start:.1f} s)', file=sys.stderr)
    return status


if __name__ == '__main__':
    sys.exit(main())
