"""Bad input gets one clear line on stderr, never a traceback from deep inside mmcv."""
import os.path as osp
import shutil

import pytest
import torch
from conftest import PIPELINES, ROOT, run_tool

from mmext.utils.errors import explain

TRAIN = osp.join(ROOT, 'tools', 'train.py')
TEST = osp.join(ROOT, 'tools', 'test.py')


def _assert_one_line_error(proc, prog, *needles):
    assert proc.returncode != 0
    assert 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f'{prog}: error: '), proc.stderr[-3000:]
    for needle in needles:
        assert needle in last, last
    return last


def test_missing_data_root(tmp_path):
    proc = run_tool(TRAIN, osp.join(ROOT, 'configs', 'resnet', 'retinanet_r50_fpn_1x_coco.py'),
                    '--work-dir', str(tmp_path), '--cfg-options',
                    f'train_dataloader.dataset.data_root={tmp_path}/no_coco/')
    _assert_one_line_error(proc, 'train', 'data root', 'no_coco', 'does not exist')


def test_unknown_component_type(tmp_path, embedded_root):
    proc = run_tool(TRAIN, PIPELINES['retinanet'], '--embedded', 'smoke', '--data-root',
                    embedded_root, '--work-dir', str(tmp_path), '--cfg-options',
                    'model.neck.type=mmext.NoSuchNeck')
    _assert_one_line_error(proc, 'train', "unknown component type 'mmext.NoSuchNeck'")


def test_corrupt_image(tmp_path, embedded_root):
    data = tmp_path / 'data'
    shutil.copytree(embedded_root, data)
    victim = sorted((data / 'coco' / 'train2017').iterdir())[0]
    victim.write_bytes(b'\xff\xd8 this is not a jpeg')
    proc = run_tool(TRAIN, PIPELINES['retinanet'], '--embedded', 'smoke', '--data-root',
                    str(data), '--work-dir', str(tmp_path / 'wd'))
    _assert_one_line_error(proc, 'train', 'corrupt or unreadable image', victim.name)


def test_checkpoint_with_wrong_keys(tmp_path, embedded_root):
    ckpt = tmp_path / 'wrong.pth'
    torch.save({'state_dict': {'backbone.conv1.weight': torch.zeros(64, 3, 7, 7),
                               'head.fc.weight': torch.zeros(10, 512)}}, ckpt)
    proc = run_tool(TEST, PIPELINES['retinanet'], str(ckpt), '--embedded', 'smoke',
                    '--data-root', embedded_root, '--work-dir', str(tmp_path / 'wd'))
    last = _assert_one_line_error(proc, 'test', 'does not match the model', 'missing keys',
                                  '1 unexpected keys (head.fc.weight)')
    assert 'backbone.conv1.weight' not in last.split('missing keys')[1].split('unexpected')[0]


@pytest.mark.parametrize('text, needle', [
    ("KeyError: 'SEPlugin is not in the mmdet::model registry. Please check whether the value "
     "of `SEPlugin` is correct or it was registered as expected.'", 'unknown component type'),
    ("ModuleNotFoundError: No module named 'mmcv._ext'", 'tools/setup_env.sh'),
    ('AssertionError: MMCV==2.2.0 is used but incompatible. Please install mmcv>=2.0.0rc4, '
     '<2.2.0.', 'mmcv 2.2.0 is installed'),
    ('_pickle.UnpicklingError: Weights only load failed. This file can still be loaded',
     'weights_only'),
    ('AssertionError: mmengine does not support to load mmext config.',
     'before `import mmext`'),
    ("ModuleNotFoundError: No module named 'mmdet.models'", 'tools/setup_env.sh'),
    # A user's own module (a pickled class, custom_imports) is not a broken set-up.
    ("ModuleNotFoundError: No module named 'my_project'", 'PYTHONPATH'),
])
def test_explain_known_messages(text, needle):
    assert needle in explain(RuntimeError(text))


def test_unknown_error_is_not_explained():
    assert explain(ValueError('something else entirely')) is None


def test_explain_upstream_basic_block_refusal():
    """mmdet's BasicBlock refuses plugins with a bare 'Not implemented yet.':
    explained by the frame that raised it, not by the (common) text."""
    from mmdet.registry import MODELS as MMDET_MODELS
    from mmdet.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    with pytest.raises(AssertionError) as info:
        MMDET_MODELS.build(dict(type='mmdet.ResNet', depth=18, plugins=[
            dict(cfg=dict(type='mmext.SE'), position='after_conv2')]))
    assert "type='mmext.ResNet'" in explain(info.value)
    # An mmext host option on the upstream class (the config kept its type).
    for cfg in (dict(type='mmdet.ResNet', depth=18, stem_cfg=dict(type='mmext.CModStem')),
                dict(type='mmdet.ResNeXt', depth=50, block_conv_cfg=dict(type='mmext.DCDC'))):
        with pytest.raises(TypeError) as info:
            MMDET_MODELS.build(cfg)
        arg = 'stem_cfg' if 'stem_cfg' in cfg else 'block_conv_cfg'
        assert explain(info.value).startswith(f"mmdet's / mmseg's ResNet family takes no {arg}=")
    with pytest.raises(TypeError) as info:
        MMDET_MODELS.build(dict(type='mmdet.ResNet', depth=18, no_such_option=1))
    assert explain(info.value) is None
    try:
        raise AssertionError('Not implemented yet.')
    except AssertionError as exc:
        assert explain(exc) is None
