"""Two-process DDP (gloo on CPU) through tools/dist_train.sh on the embedded data."""
import os
import os.path as osp
import socket
import subprocess
import sys

import pytest
from conftest import PIPELINES, ROOT


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_dist_train_two_processes(tmp_path, embedded_root):
    env = dict(os.environ, PORT=str(_free_port()), PYTHON=sys.executable, PYTHONUNBUFFERED='1')
    proc = subprocess.run(
        ['bash', osp.join(ROOT, 'tools', 'dist_train.sh'), PIPELINES['retinanet'], '2',
         '--embedded', 'smoke', '--data-root', embedded_root, '--work-dir', str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert 'Distributed training: True' in out
    assert "'world_size': 2" in out or 'world_size: 2' in out or 'GPU number: 2' in out, \
        out[-4000:]
    assert (tmp_path / 'iter_4.pth').is_file()
    assert 'Iter(val)' in out
