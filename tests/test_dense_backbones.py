"""What holds for every registered mmext dense backbone: it has configs in the
three pipelines and a docs page, rejects an unknown variant by listing the
known ones, and the converter CLI knows it."""
import glob
import os.path as osp
import re
import subprocess
import sys

import pytest
from conftest import CONFIGS

import mmext.models  # noqa: F401  (registration)
from mmext.models.backbones.base_backbone import DenseBackbone
from mmext.registry import MODELS

ROOT = osp.dirname(CONFIGS)
DENSE = sorted(name for name, cls in MODELS.module_dict.items()
               if isinstance(cls, type) and issubclass(cls, DenseBackbone))
CONFIG_TEXT = {p: open(p).read() for p in glob.glob(osp.join(CONFIGS, '*', '*.py'))}
DOCS_TEXT = {p: open(p).read() for p in glob.glob(osp.join(ROOT, 'docs', 'designs', '*.md'))}


def test_the_issue_backbones_are_registered():
    assert {'VAN', 'MogaNet', 'HorNet', 'MPViT', 'HATNet', 'FCViT', 'MViTv2'} <= set(DENSE)


@pytest.mark.parametrize('name', DENSE)
def test_configs_and_docs_name_every_backbone(name):
    users = [osp.basename(p) for p, text in CONFIG_TEXT.items()
             if re.search(rf'''type=(['"])mmext\.{name}\1''', text)]
    for prefix in ('retinanet_', 'mask-rcnn_', 'upernet_'):
        assert any(u.startswith(prefix) for u in users), (
            f"no {prefix}* config under configs/ writes type='mmext.{name}' "
            f'(configs that do: {users})')
    assert any(f'mmext.{name}' in text for text in DOCS_TEXT.values()), (
        f'no page of docs/designs/ names mmext.{name} (see docs/adding_a_design.md, Docs)')


@pytest.mark.parametrize('name', DENSE)
def test_unknown_arch_lists_the_known_ones(name):
    cls = MODELS.get(name)
    with pytest.raises((ValueError, KeyError, AssertionError)) as err:
        cls(arch='no-such-variant')
    assert 'no-such-variant' in str(err.value) or 'arch' in str(err.value)


def test_converter_rejects_what_has_no_official_layout(tmp_path):
    script = osp.join(ROOT, 'tools', 'model_converters', 'convert_official.py')
    res = subprocess.run([sys.executable, script, 'ResNet', 'x.pth', str(tmp_path / 'y.pth')],
                         cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 1
    assert 'no official checkpoint layout' in res.stderr and 'VAN' in res.stderr
    res = subprocess.run([sys.executable, script, 'VAN', str(tmp_path / 'absent.pth'),
                          str(tmp_path / 'y.pth')], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 1 and 'not found' in res.stderr


def test_convert_subcommand_help_lists_every_layout():
    """``python -m mmext convert`` (no checkout needed) lists every accepted
    TYPE, read from the layout table, in its --help."""
    from mmext.models.official_layouts import official_layouts
    res = subprocess.run([sys.executable, '-m', 'mmext', 'convert', '--help'], cwd=ROOT,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert 'mmext convert' in res.stdout
    text = ' '.join(res.stdout.split())  # argparse wraps the help text
    missing = [name for name in official_layouts() if name not in text]
    assert not missing, (missing, res.stdout)
