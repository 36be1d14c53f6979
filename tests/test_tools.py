"""tools/train.py and tools/test.py drive mmdet and mmseg configs alike; every
tool script runs from any folder on the installed mmext."""
import glob
import json
import os.path as osp
import subprocess
import sys

import pytest
import torch
from conftest import PIPELINES, ROOT, run_tool

TRAIN = osp.join(ROOT, 'tools', 'train.py')
TEST = osp.join(ROOT, 'tools', 'test.py')


@pytest.mark.parametrize('name, metric', [('retinanet', 'coco/bbox_mAP'), ('upernet', 'mIoU')])
def test_train_then_test_cli(name, metric, tmp_path, embedded_root):
    work = tmp_path / 'work'
    proc = run_tool(TRAIN, PIPELINES[name], '--embedded', 'smoke', '--data-root', embedded_root,
                    '--work-dir', str(work))
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = work / 'iter_4.pth'
    assert ckpt.is_file()

    proc = run_tool(TEST, PIPELINES[name], str(ckpt), '--embedded', 'smoke', '--data-root',
                    embedded_root, '--work-dir', str(tmp_path / 'test'))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert metric in proc.stdout + proc.stderr
    # mmengine writes the test metrics as json next to the log
    found = list((tmp_path / 'test').rglob('*.json'))
    metrics = {}
    for f in found:
        try:
            metrics.update(json.loads(f.read_text().splitlines()[-1]))
        except (ValueError, IndexError):
            continue
    assert metric in metrics, found


def test_train_resume_flag(tmp_path, embedded_root):
    work = tmp_path / 'work'
    args = [TRAIN, PIPELINES['retinanet'], '--embedded', 'smoke', '--data-root', embedded_root,
            '--work-dir', str(work), '--cfg-options', 'train_cfg.max_iters=2',
            'default_hooks.checkpoint.interval=2']
    assert run_tool(*args).returncode == 0
    args[-2] = 'train_cfg.max_iters=4'
    proc = run_tool(*args, '--resume')
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    assert 'resumed epoch: 0, iter: 2' in out
    assert (work / 'iter_4.pth').is_file()


@pytest.mark.skipif(torch.cuda.is_available(), reason='AMP is valid on a GPU machine')
def test_amp_on_cpu_is_a_clear_error(tmp_path, embedded_root):
    proc = run_tool(TRAIN, PIPELINES['retinanet'], '--embedded', 'smoke', '--data-root',
                    embedded_root, '--work-dir', str(tmp_path), '--amp')
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith('train: error: --amp needs a CUDA GPU')


SCRIPTS = sorted(osp.relpath(p, ROOT) for pattern in ('tools/**/*.py', '.dev_scripts/*.py')
                 for p in glob.glob(osp.join(ROOT, pattern), recursive=True))


def test_tool_scripts_run_from_another_folder(tmp_path):
    """Each script's --help from a folder outside the checkout, in one
    interpreter (runpy, so not even the script's own folder is on sys.path):
    the scripts import the installed mmext, as mmdet's tools import mmdet."""
    assert len(SCRIPTS) >= 12, SCRIPTS
    for script in SCRIPTS:
        with open(osp.join(ROOT, script), encoding='utf-8') as f:
            assert 'sys.path.insert' not in f.read(), f'{script} puts its checkout on sys.path'
    runner = (
        'import runpy, sys\n'
        'failed = []\n'
        'for path in sys.argv[1:]:\n'
        '    sys.argv = [path, "--help"]\n'
        '    try:\n'
        '        runpy.run_path(path, run_name="__main__")\n'
        '    except SystemExit as e:\n'
        '        if e.code not in (0, None):\n'
        '            failed.append((path, e.code))\n'
        '    else:\n'
        '        failed.append((path, "no --help exit"))\n'
        'print("FAILED", failed)\n')
    proc = subprocess.run([sys.executable, '-c', runner,
                           *(osp.join(ROOT, s) for s in SCRIPTS)],
                          cwd=str(tmp_path), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == 'FAILED []', proc.stdout[-3000:]
