"""Res2Net comes from MMDetection unchanged; mmext only ships configs. This
pins the published size and that mmseg configs reach it across scopes."""
import pytest
import torch
from mmengine.registry import DefaultScope


def test_res2net_50_26w_4s_matches_the_published_size():
    from mmdet.models.backbones import Res2Net
    net = Res2Net(depth=50, scales=4, base_width=26)
    # mmdet builds the v1d layout whatever deep_stem / avg_down say; its deep
    # stem adds ~19k parameters over the paper's 7x7 stem, well inside 1 %.
    assert net.deep_stem and net.avg_down
    params = sum(p.numel() for p in net.parameters()) + 2048 * 1000 + 1000
    assert params == pytest.approx(25.70e6, rel=0.01)
    # 26 channels per scale at the first stage, 4 scales: 3 hierarchical 3x3 convs.
    block = net.layer1[0]
    assert block.conv1.out_channels == 26 * 4
    assert len(block.convs) == 3 and all(c.in_channels == 26 for c in block.convs)


def test_res2net_builds_from_an_mmseg_config():
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    with DefaultScope.overwrite_default_scope('mmseg'):
        net = MODELS.build(dict(type='mmdet.Res2Net', depth=50, scales=4, base_width=26))
    net.eval()
    with torch.no_grad():
        out = net(torch.randn(1, 3, 61, 45))
    assert [o.shape[1] for o in out] == [256, 512, 1024, 2048]
