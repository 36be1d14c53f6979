"""MobileNetV2: MMDetection's class as configs/mobilenet_v2 builds it (exact
size, the out_indices of the installed mmdet, any input size, bf16, frozen
stages and norm_eval, one image, with_cp), torchvision's checkpoint layout
(converter, same maps), and use from mmseg configs.

The shared backbone contract (test_backbone_contract.py) discovers mmext's
registered classes only, and reads declarations (``out_channels``,
``out_strides``, ``stage_modules``) that mmdet's class does not have, so the
same properties are checked here on mmdet's class.
"""
import math

import pytest
import torch
import torchvision
from backbone_checks import count_params
from design_checks import assert_all_grads
from mmdet.models.backbones import MobileNetV2
from mmdet.registry import MODELS as DET_MODELS
from mmengine.registry import DefaultScope
from mmseg.registry import MODELS as SEG_MODELS
from torch.nn.modules.batchnorm import _BatchNorm

from mmext.models.backbones.mobilenet_v2 import (MOBILENET_V2,
                                                 convert_torchvision_mobilenet_v2)
from mmext.utils.config import load_config

CONFIG_DIR = 'configs/mobilenet_v2'
RETINANET = f'{CONFIG_DIR}/retinanet_mobilenetv2_fpn_1x_coco.py'
UPERNET = f'{CONFIG_DIR}/upernet_mobilenetv2_4xb4-160k_ade20k-512x512.py'
# mmdet 3.3.0: index i counts [layer1 .. layer7, conv2] (catalog B3).
CHANNELS = (16, 24, 32, 64, 96, 160, 320, 1280)
STRIDES = (2, 4, 8, 16, 16, 32, 32, 32)


def build(**kwargs):
    model = MobileNetV2(**kwargs)
    model.init_weights()
    return model


def maps(model, x):
    model.eval()  # mmdet's train() returns None: no chaining
    with torch.no_grad():
        return model(x)


def test_parameter_count_is_torchvision_features():
    model = MobileNetV2()
    assert count_params(model) == 2_223_872
    assert count_params(torchvision.models.mobilenet_v2().features) == 2_223_872


def test_out_indices_of_the_installed_mmdet():
    h, w = 97, 131
    outs = maps(build(out_indices=tuple(range(8))), torch.randn(1, 3, h, w))
    assert [tuple(o.shape[1:]) for o in outs] == [
        (c, math.ceil(h / s), math.ceil(w / s)) for c, s in zip(CHANNELS, STRIDES)]
    # The configs' default (1, 2, 4, 7): strides 4..32.
    outs = maps(build(), torch.randn(1, 3, h, w))
    assert [tuple(o.shape[1:]) for o in outs] == [(24, 25, 33), (32, 13, 17), (96, 7, 9),
                                                  (1280, 4, 5)]


def test_large_odd_input_and_bf16():
    model = build(widen_factor=0.25)
    outs = maps(model, torch.randn(1, 3, 511, 673))
    assert [o.shape[-2:] for o in outs] == [(128, 169), (64, 85), (32, 43), (16, 22)]
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        outs = model(torch.randn(2, 3, 67, 45))
    assert all(not torch.isnan(o.float()).any() for o in outs)


def test_frozen_stages_and_norm_eval_as_the_detection_configs_set_them():
    """mmdet's semantics: ``frozen_stages=k`` freezes ``conv1`` and
    ``layer1`` .. ``layer{k}``, applied by ``train()`` (not at build);
    ``norm_eval`` keeps every BN in eval mode (the detection configs set
    both, so the stem's BN, which ``frozen_stages`` leaves in training mode,
    is frozen too)."""
    model = build(widen_factor=0.5, frozen_stages=1, norm_eval=True)
    model.train()
    frozen = [model.conv1, model.layer1]
    frozen_ids = {id(p) for m in frozen for p in m.parameters()}
    assert all(not p.requires_grad for p in model.parameters() if id(p) in frozen_ids)
    assert all(p.requires_grad for p in model.parameters() if id(p) not in frozen_ids)
    assert all(not m.training for m in model.modules() if isinstance(m, _BatchNorm))
    outs = model(torch.randn(2, 3, 35, 51))
    sum((o**2).mean() for o in outs).backward()
    assert all(p.grad is None for p in model.parameters() if id(p) in frozen_ids)
    assert model.layer2[0].depthwise_conv.conv.weight.grad.abs().sum() > 0
    # Without norm_eval the stem's BN keeps training (mmdet never sets it to eval).
    plain = build(widen_factor=0.5, frozen_stages=1)
    plain.train()
    assert plain.conv1.bn.training and not plain.layer1[0].depthwise_conv.bn.training


def test_one_image_trains_and_with_cp_changes_nothing():
    """One image per device: every BN normalises over a spatial map
    (4x5 at stride 32 for 97x131). Checkpointing (mmdet's per-block
    ``with_cp``) gives the same outputs and gradients."""
    torch.manual_seed(0)
    ref = build(widen_factor=0.5)
    cpm = build(widen_factor=0.5, with_cp=True)
    cpm.load_state_dict(ref.state_dict())
    ref.train()
    cpm.train()
    x = torch.randn(1, 3, 97, 131, requires_grad=True)
    outs_ref, outs_cp = ref(x), cpm(x)
    for a, b in zip(outs_ref, outs_cp):
        torch.testing.assert_close(a, b)
    assert_all_grads(ref, outs_ref)
    assert_all_grads(cpm, outs_cp)
    for (name, a), b in zip(ref.named_parameters(), cpm.parameters()):
        torch.testing.assert_close(a.grad, b.grad, msg=name)


@pytest.fixture(scope='module')
def torchvision_pair():
    """torchvision's MobileNetV2 with non-trivial BN statistics and mmdet's
    with its converted weights."""
    torch.manual_seed(0)
    tv = torchvision.models.mobilenet_v2()
    for m in tv.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.2)
            m.running_var.uniform_(0.5, 2)
            m.bias.data.normal_(0, 0.2)
    tv.eval()
    return tv, convert_torchvision_mobilenet_v2(tv.state_dict())


def test_torchvision_layout_converts_exactly(torchvision_pair):
    """Every key of mmdet's model, none left over, and the same maps:
    mmdet's outputs (1, 2, 4, 7) are torchvision's ``features.3``, ``.6``,
    ``.13`` and ``.18``."""
    tv, converted = torchvision_pair
    model = MobileNetV2()
    assert set(converted) == set(model.state_dict())
    model.load_state_dict(converted)
    x = torch.randn(2, 3, 97, 131)
    with torch.no_grad():
        taps, h = [], x
        for i, layer in enumerate(tv.features):
            h = layer(h)
            if i in (3, 6, 13, 18):
                taps.append(h)
    for out, exp in zip(maps(model, x), taps):
        torch.testing.assert_close(out, exp)


@pytest.mark.parametrize('container', ['state_dict', 'model', 'raw'])
def test_converter_cli_and_init_cfg(torchvision_pair, tmp_path, container):
    """A torchvision file (classifier included) through ``mmext convert
    MobileNetV2 ... --config`` (in process), then through the config's
    ``init_cfg``: every tensor arrives."""
    from mmengine.config import ConfigDict

    from mmext.tools.convert_official import main
    tv, converted = torchvision_pair
    official = tv.state_dict()
    obj = {'state_dict': official} if container == 'state_dict' else \
        {'model': {'module.' + k: v for k, v in official.items()}} if container == 'model' \
        else official
    src, dst = tmp_path / 'mobilenet_v2-b0353104.pth', tmp_path / 'converted.pth'
    torch.save(obj, src)
    main(['MobileNetV2', str(src), str(dst), '--config', RETINANET])
    backbone = dict(load_config(RETINANET).model.backbone)
    backbone['init_cfg'] = ConfigDict(type='Pretrained', checkpoint=str(dst))
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = DET_MODELS.build(backbone)
    model.init_weights()
    own = model.state_dict()
    assert set(own) == set(converted)
    for k, v in own.items():
        torch.testing.assert_close(v, converted[k], msg=k)


def test_declarations_are_found():
    from mmext.analysis.benchmark import listed_references
    from mmext.models.official_layouts import official_layouts
    assert official_layouts()['MobileNetV2'].convert is convert_torchvision_mobilenet_v2
    assert MOBILENET_V2.upstream == 'mmdet.MobileNetV2'
    for path, scope in ((RETINANET, 'mmdet'), (UPERNET, 'mmseg')):
        backbone = load_config(path).model.backbone
        assert listed_references(backbone, scope=scope) == ('timm:mobilenetv2_100', )


def test_upernet_builds_mmdets_class_from_mmseg():
    """mmseg registers a MobileNetV2 of its own (dilated, no final 1x1 to
    1280): the scoped ``mmdet.MobileNetV2`` of the UperNet configs gives
    the detection configs' backbone inside mmseg."""
    cfg = load_config(UPERNET)
    backbone = dict(cfg.model.backbone, init_cfg=None, norm_cfg=dict(type='BN'))
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = SEG_MODELS.build(backbone)
        unscoped = SEG_MODELS.build(dict(type='MobileNetV2'))
    assert type(model) is MobileNetV2
    outs = maps(model, torch.randn(1, 3, 100, 150))
    assert [o.shape[1] for o in outs] == list(cfg.model.decode_head.in_channels)
    assert outs[cfg.model.auxiliary_head.in_index].shape[1] == cfg.model.auxiliary_head.in_channels
    assert [o.shape[-2:] for o in outs] == [(25, 38), (13, 19), (7, 10), (4, 5)]
    assert type(unscoped).__module__.startswith('mmseg.')
    assert [o.shape[1] for o in maps(unscoped, torch.randn(1, 3, 64, 64))] != \
        list(cfg.model.decode_head.in_channels)
