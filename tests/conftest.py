import os
import os.path as osp
import subprocess
import sys

import pytest

# Under pytest-xdist (tools/run_tests.sh runs one worker per core) each worker
# computes on one thread: two workers of two threads each on two cores spend
# their time in OpenMP waits. Set before the tests import torch.
if os.environ.get('PYTEST_XDIST_WORKER'):
    os.environ.setdefault('OMP_NUM_THREADS', '1')
    if 'torch' in sys.modules:
        sys.modules['torch'].set_num_threads(1)

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = osp.join(ROOT, 'configs')

# The three reference pipelines at demo size, as the README demo uses them.
PIPELINES = {
    'retinanet': osp.join(CONFIGS, 'resnet', 'retinanet_r18_fpn_1x_coco.py'),
    'mask-rcnn': osp.join(CONFIGS, 'resnet', 'mask-rcnn_r18_fpn_1x_coco.py'),
    'upernet': osp.join(CONFIGS, 'resnet', 'upernet_r18_4xb4-160k_ade20k-512x512.py'),
}


@pytest.fixture(scope='session', autouse=True)
def unformatted_config_text():
    """mmengine formats every config text it logs or dumps with yapf (five
    times per runner), which took 40% of a 2-iteration smoke run. The text is
    the same Python unformatted; the tools run in subprocesses still format it."""
    import mmengine.config.config as mmengine_config
    formatter = mmengine_config.FormatCode
    mmengine_config.FormatCode = lambda text, **kwargs: (text, False)
    yield
    mmengine_config.FormatCode = formatter


@pytest.fixture(scope='session')
def embedded_root(tmp_path_factory):
    """A small embedded dataset shared by every test that trains (the smoke
    preset uses its first 8 train / 4 val images)."""
    from mmext.datasets.embedded import generate
    root = tmp_path_factory.mktemp('embedded')
    generate(str(root), num_train=12, num_val=6, seed=0)
    return str(root)


def pytest_collection_modifyitems(config, items):
    """Keep a module's tests on one xdist worker when they share a module- or
    class-scoped fixture (a training run several tests read), so that the run
    is not repeated per worker (``--dist loadgroup``); every other test goes
    to whichever worker is free."""
    if not config.pluginmanager.hasplugin('xdist'):
        return
    for item in items:
        info = getattr(item, '_fixtureinfo', None)
        if info is None:
            continue
        if any(d.scope in ('module', 'class', 'package')
               for defs in info.name2fixturedefs.values() for d in defs):
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))


def smoke_cfg(name, data_root, work_dir, **options):
    """The full-scale config of a pipeline switched to the smoke preset."""
    from mmext.utils.config import load_config, register_library
    cfg = load_config(PIPELINES[name], options or None, embedded='smoke', data_root=data_root)
    register_library(cfg)
    cfg.work_dir = str(work_dir)
    # Runners are process-wide singletons by experiment name (message hub,
    # visualizer); several per test session need distinct names.
    cfg.experiment_name = f'{name}_{osp.basename(str(work_dir))}_{id(cfg)}'
    # The upstream bases name the visualizer 'visualizer', and mmengine hands
    # every later runner that first instance, which writes into the first
    # run's (by then removed) work_dir; unnamed, it takes experiment_name.
    cfg.visualizer.pop('name', None)
    cfg.randomness = dict(seed=0)
    return cfg


def run_tool(*args, timeout=600, env=None):
    """Run a tools/ script in a fresh interpreter, as a user would."""
    full_env = dict(os.environ, PYTHONUNBUFFERED='1', **(env or {}))
    full_env.pop('MMEXT_DEBUG', None)
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=full_env)
