"""Inference latency and training step time of a config, optionally side by
side with another config or a timm model, against this machine's limits.

    python tools/analysis_tools/benchmark.py CONFIG [--compare OTHER] [--shape H W]
        [--batch N] [--repeats R] [--warmup W] [--train] [--backbone-only]
        [--device cpu|cuda] [--json OUT]

OTHER is a config path, ``timm:NAME`` or a bare name timm knows (built with
``features_only=True``), ``mmpretrain:TYPE:ARCH`` (an mmpretrain backbone with
every stage's output), or ``reference``: the implementation CONFIG's backbone
class declares (``reference_implementations``, in the design's own file). Models
are untrained; a full config compared with a timm / mmpretrain model is reduced
to its backbone; a reference whose package is missing is skipped with a note.
Both models run interleaved on the same inputs; the report prints both rows and
the ratio A/B. The work is in ``mmext/analysis/benchmark.py``.
"""
import argparse
import json
import os.path as osp
import sys

import mmext  # noqa: F401  (stack fixes)
from mmext.analysis.benchmark import render, run_benchmark
from mmext.utils.errors import friendly_errors


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Speed benchmark of a config (and a reference)')
    parser.add_argument('config', help='config file, or timm:NAME')
    parser.add_argument('--compare', metavar='OTHER',
                        help='second model: a config file, timm:NAME, a timm model name, '
                        "mmpretrain:TYPE:ARCH or 'reference' (the listed reference of CONFIG's "
                        'backbone)')
    parser.add_argument('--shape', type=int, nargs=2, default=[224, 224], metavar=('H', 'W'),
                        help='input height and width (default 224 224)')
    parser.add_argument('--batch', type=int, default=1, help='images per pass (default 1)')
    parser.add_argument('--repeats', type=int, default=10,
                        help='timed repeats per model (default 10)')
    parser.add_argument('--warmup', type=int, default=3,
                        help='untimed repeats first (default 3)')
    parser.add_argument('--train', action='store_true',
                        help='also time training steps (forward + backward + SGD step)')
    parser.add_argument('--backbone-only', action='store_true',
                        help="benchmark the configs' backbones, not the whole models")
    parser.add_argument('--device', choices=['cpu', 'cuda'],
                        help='default: cuda when available, else cpu')
    parser.add_argument('--no-machine', action='store_true',
                        help='skip the GEMM / conv throughput probe')
    parser.add_argument('--gemm-size', type=int,
                        help='n of the n x n GEMM probe (default 2048 cpu, 8192 cuda)')
    parser.add_argument('--threads', type=int,
                        help='torch CPU threads (default: torch\'s own choice)')
    parser.add_argument('--json', metavar='OUT', help='also write the results as JSON')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    result = run_benchmark(args.config, args.compare, shape=tuple(args.shape), batch=args.batch,
                           repeats=args.repeats, warmup=args.warmup, train=args.train,
                           backbone_only=args.backbone_only, device=args.device,
                           machine=not args.no_machine, progress=not args.no_progress,
                           root=osp.abspath('.'), gemm_size=args.gemm_size)
    print(render(result), end='')
    if args.json:
        with open(args.json, 'w', encoding='utf-8') as f:
            json.dump(result.to_dict(), f, indent=2)
    return 0


if __name__ == '__main__':
    with friendly_errors('benchmark'):
        sys.exit(main())
