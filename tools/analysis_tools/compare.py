"""Train and evaluate configs on the embedded data with fixed seeds, then
build the leaderboard: the "submit configs for a reproducible comparison"
workflow in one command.

    python tools/analysis_tools/compare.py CONFIG [CONFIG ...] [--seeds 0 1]
        [--embedded {demo,smoke}] [--work-dir work_dirs/compare] [--cfg-options k=v ...]
        [--baseline CONFIG] [--resources]

Each (config, seed) trains in its own ``tools/train.py`` process into
WORK_DIR/<config name>/seed<k> (stdout/stderr in train.out, the command and
exit status in run.json), so a crash of one run does not stop the others; it
is listed in the leaderboard instead. Runs already finished are skipped unless
--force. The leaderboard goes to WORK_DIR/leaderboard/ (leaderboard.md, the
accuracy-vs-FLOPs and training-curve plots; with --baseline, every other config
against it, paired by seed), with its figures as one run set of
the model zoo's local results (local_results.yml: date, seeds, machine, commit,
command, mean final metrics of mmext's configs); in a checkout,
``python .dev_scripts/model_zoo.py --record WORK_DIR/leaderboard/local_results.yml``
adds them to docs/local_results.yml and regenerates the docs. Exit status 1
when a run (or, with --resources, a latency benchmark) failed.

--resources adds the resource view (accuracy, params, FLOPs, size, BOPs,
peak training memory, latency): each run trains with ``--peak-memory``
(mmext.PeakMemoryHook writes WORK_DIR/<name>/seed<k>/peak_memory.json) and
each config is benchmarked once after training
(tools/analysis_tools/benchmark.py, whole model, batch 1, 224x224, into
WORK_DIR/<name>/benchmark.json); local_results.yml then carries the measured
resources too. A finished run without peak_memory.json is trained again.
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import time

from mmext.utils.errors import MMExtError, friendly_errors


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train configs, then build the leaderboard')
    parser.add_argument('configs', nargs='+', help='config files')
    parser.add_argument('--seeds', nargs='+', type=int, default=[0], help='seeds (default 0)')
    parser.add_argument('--embedded', default='demo', choices=['demo', 'smoke'],
                        help='embedded-data preset (default demo)')
    parser.add_argument('--work-dir', default=osp.join('work_dirs', 'compare'))
    parser.add_argument('--data-root', help='embedded data folder (default data/embedded)')
    parser.add_argument('--cfg-options', nargs='+', default=[],
                        help='key=value overrides passed on to tools/train.py')
    parser.add_argument('--force', action='store_true', help='retrain finished runs')
    parser.add_argument('--no-costs', action='store_true',
                        help='leaderboard without backbone params / FLOPs')
    parser.add_argument('--baseline', metavar='CONFIG',
                        help='report every other config against this one (trained too when '
                             'not among CONFIG): difference paired by seed, 95%% interval, '
                             'cost ratios')
    parser.add_argument('--resources', action='store_true',
                        help='measure peak training memory and inference latency and add '
                             'the resource view to the leaderboard')
    parser.add_argument('--latency-repeats', type=int, default=10,
                        help='timed inference passes per config with --resources (default 10)')
    return parser.parse_args(argv)


def _rel(path):
    """An mmext config as ``configs/<design>/...`` (the leaderboard's design
    column and the model zoo's key), any other config as an absolute path."""
    from mmext.analysis.leaderboard import configs_parent
    parent = configs_parent()
    path = osp.realpath(path)
    return osp.relpath(path, parent) if path.startswith(parent + os.sep) else path


def train_one(config, seed, args):
    name = osp.splitext(osp.basename(config))[0]
    work_dir = osp.join(args.work_dir, name, f'seed{seed}')
    meta_path = osp.join(work_dir, 'run.json')
    if not args.force and osp.isfile(meta_path):
        from mmext.analysis.leaderboard import read_run
        measured = not args.resources or osp.isfile(osp.join(work_dir, 'peak_memory.json'))
        if read_run(work_dir).status == 'finished' and measured:
            print(f'[compare] {name} seed {seed}: finished before, skipped', flush=True)
            return 0
    os.makedirs(work_dir, exist_ok=True)
    # mmext's train tool of the installed package, as a fresh process.
    cmd = [sys.executable, '-m', 'mmext', 'train', config, '--embedded', args.embedded, '--work-dir', work_dir,
           '--cfg-options', f'randomness.seed={seed}', *args.cfg_options]
    if args.resources:
        cmd[4:4] = ['--peak-memory']
    if args.data_root:
        cmd[5:5] = ['--data-root', args.data_root]
    meta = dict(config=_rel(config), seed=seed, embedded=args.embedded,
                cfg_options=args.cfg_options, command=cmd, returncode=None)
    with open(meta_path, 'w') as f:
        json.dump(meta, f, indent=2)
    print(f'[compare] {name} seed {seed}: training -> {work_dir}', flush=True)
    start = time.time()
    with open(osp.join(work_dir, 'train.out'), 'w') as out:
        rc = subprocess.call(cmd, stdout=out, stderr=subprocess.STDOUT,
                             env=dict(os.environ, PYTHONUNBUFFERED='1'))
    meta.update(returncode=rc, wall_time_s=round(time.time() - start, 1))
    with open(meta_path, 'w') as f:
        json.dump(meta, f, indent=2)
    state = 'done' if rc == 0 else f'FAILED (exit {rc}, see {work_dir}/train.out)'
    print(f'[compare] {name} seed {seed}: {state} in {meta["wall_time_s"]:.0f} s', flush=True)
    return rc


def benchmark_one(config, args):
    """Inference latency of ``config`` into WORK_DIR/<name>/benchmark.json
    (tools/analysis_tools/benchmark.py in a fresh process: the whole model,
    eval mode, batch 1, 224x224, no machine-limit figures); skipped when that
    file exists, unless --force. Returns the exit status."""
    name = osp.splitext(osp.basename(config))[0]
    out = osp.join(args.work_dir, name, 'benchmark.json')
    if osp.isfile(out) and not args.force:
        print(f'[compare] {name}: latency measured before, skipped', flush=True)
        return 0
    os.makedirs(osp.dirname(out), exist_ok=True)
    tool = osp.join(osp.dirname(osp.abspath(__file__)), 'benchmark.py')
    cmd = [sys.executable, tool, config, '--no-machine', '--no-progress', '--repeats',
           str(args.latency_repeats), '--json', out]
    print(f'[compare] {name}: inference latency -> {out}', flush=True)
    with open(osp.join(args.work_dir, name, 'benchmark.out'), 'w') as log:
        rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT)
    if rc != 0:
        print(f'[compare] {name}: benchmark FAILED (exit {rc}, see '
              f'{osp.join(args.work_dir, name, "benchmark.out")}); latency not measured',
              flush=True)
    return rc


def local_results_file(result, args):
    """This comparison's figures as one run set of the model zoo's local
    results, in WORK_DIR/leaderboard/local_results.yml; [] when no finished
    run is of an mmext config."""
    import yaml

    from mmext.analysis.leaderboard import local_run_set
    opts = ''.join(f' {o}' for o in args.cfg_options)
    res = ' --resources' if args.resources else ''
    command = (f'python tools/analysis_tools/compare.py CONFIG --embedded {args.embedded} '
               f'--seeds {" ".join(map(str, args.seeds))}{res}'
               f'{" --cfg-options" + opts if opts else ""} (each seed: python '
               f'tools/train.py CONFIG --embedded {args.embedded}'
               f'{" --peak-memory" if res else ""} --cfg-options randomness.seed=SEED{opts}')
    if res:
        command += (f'; latency: python tools/analysis_tools/benchmark.py CONFIG --no-machine '
                    f'--repeats {args.latency_repeats}')
    command += ')'
    entry = local_run_set(result['entries'], command,
                          note=f'Embedded data ({args.embedded} preset), not COCO or ADE20K')
    if entry is None:
        print('[compare] no finished run of an mmext config: no local_results.yml',
              file=sys.stderr)
        return []
    path = osp.join(args.work_dir, 'leaderboard', 'local_results.yml')
    item = {k: v for k, v in entry.items() if v not in (None, '')}
    with open(path, 'w', encoding='utf-8') as f:
        yaml.safe_dump({'runs': [item]}, f, sort_keys=False, allow_unicode=True, width=100)
    return [path]


def with_baseline(configs, baseline):
    """``configs`` with ``baseline`` first when it is not among them."""
    if baseline and osp.realpath(baseline) not in {osp.realpath(c) for c in configs}:
        return [baseline, *configs]
    return list(configs)


def main(argv=None):
    args = parse_args(argv)
    args.configs = with_baseline(args.configs, args.baseline)
    with friendly_errors('compare'):
        for config in args.configs:
            if not osp.isfile(config):
                raise MMExtError(f'config file not found: {config}')
        codes = [train_one(c, s, args) for c in args.configs for s in args.seeds]
        bench = [benchmark_one(c, args) for c in args.configs] if args.resources else []
        import mmext  # noqa: F401  (stack fixes)
        from mmext.analysis.leaderboard import build_leaderboard
        result = build_leaderboard([args.work_dir], osp.join(args.work_dir, 'leaderboard'),
                                   with_costs=not args.no_costs, baseline=args.baseline,
                                   resources=args.resources or None)
        result['files'] += local_results_file(result, args)
    with open(result['files'][0], encoding='utf-8') as f:
        print(f.read(), end='')
    print('[compare] wrote ' + ', '.join(result['files']))
    failed = sum(rc != 0 for rc in codes)
    if failed:
        print(f'[compare] {failed} of {len(codes)} runs failed', file=sys.stderr)
    bench_failed = sum(rc != 0 for rc in bench)
    if bench_failed:
        print(f'[compare] {bench_failed} of {len(bench)} latency benchmarks failed',
              file=sys.stderr)
    return 1 if failed or bench_failed else 0


if __name__ == '__main__':
    sys.exit(main())
