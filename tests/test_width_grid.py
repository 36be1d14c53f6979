"""tools/analysis_tools/mutualnet_eval.py (mmext/analysis/width_grid.py): one
slimmable checkpoint evaluated at three widths, on the embedded data."""
import importlib.util
import json
import os.path as osp

import pytest
import torch

import mmext  # noqa: F401
from mmext.analysis.width_grid import GridPoint, render_table, scale_test_pipeline
from mmext.utils.errors import MMExtError

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
TOOL = osp.join(ROOT, 'tools', 'analysis_tools', 'mutualnet_eval.py')
BASE = osp.join(ROOT, 'configs', 'resnet', 'upernet_r18-c128_4xb4-160k_ade20k-512x512.py')


def _tool():
    spec = importlib.util.spec_from_file_location('mutualnet_eval', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tiny_config(tmp_path):
    path = tmp_path / 'upernet_tiny-slimmable.py'
    path.write_text(
        f"_base_ = '{BASE}'\n"
        "model = dict(\n"
        "    pretrained=None,\n"
        "    backbone=dict(type='mmext.ResNetV1c', base_channels=16, stem_channels=16,\n"
        "                  slimmable=dict(width_mult_list=[0.7, 0.85])),\n"
        "    decode_head=dict(type='mmext.SlimmableUPerHead', in_channels=[16, 32, 64, 128],\n"
        "                     channels=16),\n"
        "    auxiliary_head=dict(type='mmext.SlimmableFCNHead', in_channels=64, channels=8))\n"
        "custom_hooks = [dict(type='mmext.MutualNetHook')]\n")
    return str(path)


def test_three_widths_from_one_checkpoint(tmp_path, embedded_root):
    from mmseg.registry import MODELS

    from mmext.utils.config import load_config, register_library
    config = _tiny_config(tmp_path)
    cfg = load_config(config, embedded='smoke', data_root=embedded_root)
    register_library(cfg)
    model = MODELS.build(cfg.model)
    ckpt = tmp_path / 'tiny.pth'
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), ckpt)
    out = tmp_path / 'grid'
    code = _tool().main([config, str(ckpt), '--widths', '0.7', '0.85', '1.0', '--resolutions',
                         '0.5', '--calib-batches', '1', '--embedded', 'smoke',
                         '--data-root', embedded_root, '--work-dir', str(tmp_path / 'work'),
                         '--out', str(out)])
    assert code == 0
    points = json.loads((out / 'width_grid.json').read_text())
    assert [(p['width_mult'], p['resolution']) for p in points] == [
        (0.7, 0.5), (0.85, 0.5), (1.0, 0.5)]
    # Resolution 0.5 halves the smoke test size: Resize scale (160, 128) -> (80, 64),
    # keep ratio.
    h, w = points[0]['input_shape']
    assert h <= 64 and w <= 80 and (h == 64 or w == 80)
    flops = [p['flops'] for p in points]
    assert flops[0] < flops[1] < flops[2]
    assert all(0 <= p['metrics']['mIoU'] <= 100 for p in points)
    table = (out / 'width_grid.md').read_text()
    assert '| width | resolution | input (HxW) | GFLOPs | mIoU |' in table
    assert table.count('\n| 0.7 | 0.5 |') == 1
    assert (out / 'width_grid.png').stat().st_size > 0


def test_resolution_scales_the_test_resize_and_errors():
    from mmengine.config import Config
    cfg = Config(dict(test_dataloader=dict(dataset=dict(pipeline=[
        dict(type='LoadImageFromFile'), dict(type='Resize', scale=(1333, 800),
                                             keep_ratio=True)]))))
    assert scale_test_pipeline(cfg, 0.75).dataset.pipeline[1]['scale'] == (1000, 600)
    assert cfg.test_dataloader.dataset.pipeline[1]['scale'] == (1333, 800)
    cfg.test_dataloader.dataset.pipeline.pop()
    with pytest.raises(MMExtError, match='no Resize with a scale'):
        scale_test_pipeline(cfg, 0.5)
    table = render_table([GridPoint(0.7, 1.0, (64, 80), 2_000_000_000,
                                    {'coco/bbox_mAP': 0.123})])
    assert '| 0.7 | 1 | 64x80 | 2.000 | 12.30 |' in table
