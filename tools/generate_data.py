"""Generate the embedded COCO 2017 / ADE20K-format dataset.

The work is done by :func:`mmext.datasets.embedded.generate`; a re-run with the
same arguments finds the data complete and returns at once.
"""
import argparse
import time

from mmext.datasets.embedded import generate
from mmext.utils.embedded import default_data_root


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--out', default=None,
                   help='output folder (default: $MMEXT_DATA, else data/embedded)')
    p.add_argument('--num-train', type=int, default=600)
    p.add_argument('--num-val', type=int, default=150)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--workers', type=int, default=None, help='processes (default: up to 2)')
    p.add_argument('--overwrite', action='store_true', help='regenerate even if up to date')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    s = generate(args.out or default_data_root(), num_train=args.num_train,
                 num_val=args.num_val, seed=args.seed, overwrite=args.overwrite,
                 workers=args.workers)
    state = 'generated' if s['generated'] else 'up to date'
    print(f"{state}: {s['num_train']} train + {s['num_val']} val images, "
          f"{sum(s['num_instances'].values())} instances, seed {s['seed']} -> {s['out_dir']} "
          f'({time.perf_counter() - start:.1f} s)')


if __name__ == '__main__':
    main()
