"""mmext as a downstream project gets it: a wheel that carries the configs
(``mmext/.mim/``, the mim layout), ``mmext::`` bases, ``--embedded`` and
``python -m mmext train`` from a folder outside the checkout.

One wheel is built from a copy of the sources and installed without
dependencies into a temporary folder; the stack (torch, mmdet, mmseg, ...) is
the test environment's.
"""
import glob
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
import zipfile

import pytest
from conftest import CONFIGS, ROOT
from mmengine.config import Config

from mmext.utils.errors import MMExtError

# What a checkout has (docs aside), .dev_scripts/ included to see it stay out of the wheel.
SOURCES = ('setup.py', 'setup.cfg', 'pyproject.toml', 'MANIFEST.in', 'README.md', 'mmext',
           'configs', 'tools', '.dev_scripts')


def _run(args, cwd, env=None, timeout=600):
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    return proc


@pytest.fixture(scope='module')
def wheel_install(tmp_path_factory):
    """(wheel file, folder it is installed in)."""
    src = tmp_path_factory.mktemp('src')
    ignore = shutil.ignore_patterns('__pycache__', '*.pyc', '.mim', '*.egg-info')
    for name in SOURCES:
        path = osp.join(ROOT, name)
        if osp.isdir(path):
            shutil.copytree(path, src / name, ignore=ignore)
        else:
            shutil.copy(path, src / name)
    dist = tmp_path_factory.mktemp('dist')
    _run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q',
          '-w', str(dist), str(src)], cwd=str(src))
    (wheel, ) = glob.glob(str(dist / 'mmext-*.whl'))
    site = tmp_path_factory.mktemp('site')
    _run([sys.executable, '-m', 'pip', 'install', '--no-deps', '-q', '--target', str(site), wheel],
         cwd=str(dist))
    return wheel, str(site)


def _outside_env(site):
    """An interpreter that sees the installed copy and not the checkout."""
    env = {k: v for k, v in os.environ.items()
           if k not in ('PYTHONPATH', 'MMEXT_DEBUG', 'MMEXT_DATA')}
    env.update(PYTHONPATH=site, PYTHONUNBUFFERED='1')
    return env


def test_the_wheel_carries_every_config_and_the_command(wheel_install):
    wheel, _ = wheel_install
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        entry_points = zf.read(next(n for n in names if n.endswith('entry_points.txt'))).decode()
    configs = {osp.relpath(p, CONFIGS) for p in glob.glob(osp.join(CONFIGS, '**', '*.py'),
                                                          recursive=True)}
    assert any(c.startswith('_base_/datasets/embedded_') for c in configs)
    missing = {c for c in configs if f'mmext/.mim/configs/{c}' not in names}
    assert not missing
    assert {'mmext/.mim/tools/train.py', 'mmext/.mim/tools/test.py',
            'mmext/.mim/tools/image_demo.py', 'mmext/tools/train.py'} <= names
    # Repository maintenance (the docs generators of .dev_scripts/) stays out.
    assert not [n for n in names if 'dev_scripts' in n or 'model_zoo' in n], names
    assert 'mmext = mmext.__main__:main' in entry_points


USER_CFG = """\
_base_ = 'mmext::se/retinanet_r50-se_fpn_1x_coco.py'
model = dict(bbox_head=dict(num_classes=3))
"""

CHECK = """\
import json, sys
import mmext
from mmengine.config import Config
from mmext.utils.config import load_config, register_library
from mmext.utils.embedded import default_data_root, embedded_base
cfg = Config.fromfile('user_cfg.py')
register_library(cfg)
from mmdet.registry import MODELS
model = MODELS.build(cfg.model)
embedded = load_config('user_cfg.py', embedded='smoke')
print(json.dumps(dict(
    mmext=mmext.__file__, base=embedded_base('coco_detection'), data_root=default_data_root(),
    se_units=sum(type(m).__name__ == 'SE' for m in model.modules()),
    num_classes=model.bbox_head.num_classes, embedded_classes=embedded.model.bbox_head.num_classes,
    scopes=sorted({str(v) for k, v in cfg.model.items() if k == '_scope_'}))))
"""


def test_a_user_config_inherits_an_installed_mmext_config(wheel_install, tmp_path):
    _, site = wheel_install
    (tmp_path / 'user_cfg.py').write_text(USER_CFG)
    (tmp_path / 'check.py').write_text(CHECK)
    proc = _run([sys.executable, 'check.py'], cwd=str(tmp_path), env=_outside_env(site))
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out['mmext'].startswith(site)
    assert out['base'].startswith(osp.join(site, 'mmext', '.mim', 'configs'))
    # no checkout to put it in: the embedded data goes under the current folder
    assert out['data_root'] == str(tmp_path / 'data' / 'embedded')
    assert out['se_units'] == 16  # one per bottleneck of the R-50 (3 + 4 + 6 + 3)
    assert out['num_classes'] == 3 and out['embedded_classes'] == 6
    assert out['scopes'] in ([], ['mmdet'])  # never an 'mmext' scope on mmdet types


USER_TRAIN_CFG = """\
_base_ = 'mmext::resnet/retinanet_r18_fpn_1x_coco.py'
# a user's own change on top: a narrower FPN and head
model = dict(neck=dict(out_channels=64), bbox_head=dict(in_channels=64, feat_channels=64))
"""


@pytest.mark.slow
def test_a_user_config_trains_from_outside_the_checkout(wheel_install, embedded_root, tmp_path):
    _, site = wheel_install
    (tmp_path / 'my_retinanet.py').write_text(USER_TRAIN_CFG)
    _run([sys.executable, '-m', 'mmext', 'train', 'my_retinanet.py', '--embedded', 'smoke',
          '--data-root', embedded_root, '--cfg-options', 'train_cfg.max_iters=2',
          'train_cfg.val_interval=2', 'default_hooks.checkpoint.interval=2'],
         cwd=str(tmp_path), env=_outside_env(site))
    work = tmp_path / 'work_dirs' / 'my_retinanet'
    assert (work / 'iter_2.pth').is_file()
    dumped = Config.fromfile(str(work / 'my_retinanet.py'))
    assert dumped.model.neck.out_channels == 64 and dumped.model.backbone.depth == 18
    logs = glob.glob(str(work / '*' / '*.log'))
    assert logs and 'coco/bbox_mAP' in open(logs[0]).read()


def test_mmext_prefix_in_the_checkout(tmp_path):
    """The editable install answers ``mmext::`` from the checkout's configs,
    for bases and for the tools' CONFIG argument."""
    import mmext  # noqa: F401
    from mmext.utils.config import load_config
    user = tmp_path / 'user.py'
    user.write_text("_base_ = 'mmext::resnet/upernet_r18_4xb4-160k_ade20k-512x512.py'\n")
    cfg = Config.fromfile(str(user))
    assert cfg.model.backbone.depth == 18 and cfg.default_scope == 'mmseg'
    assert load_config('mmext::resnet/upernet_r18_4xb4-160k_ade20k-512x512.py').model == cfg.model
    user.write_text("_base_ = 'mmext::resnet/no_such_config.py'\n")
    with pytest.raises(MMExtError, match=r'^mmext::resnet/no_such_config.py is not an mmext'):
        Config.fromfile(str(user))
