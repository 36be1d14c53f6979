"""ImageNet ResNet weights load into DY-/ODConv-ResNets: each static kernel
fills every slot of the conv's kernel bank."""
import pytest
import torch
from mmengine.runner.checkpoint import load_state_dict

from mmext.models.backbones import ResNet
from mmext.models.layers import DynamicConv, ODConv


def _static_resnet18():
    net = ResNet(depth=18)
    net.init_weights()
    for m in net.modules():  # non-trivial BN statistics, so a mismatch shows
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
    return net


def test_dynamic_conv_resnet_from_static_weights_is_the_static_network():
    static = _static_resnet18()
    dynamic = ResNet(depth=18, block_conv_cfg=dict(type='mmext.DynamicConv', num_kernels=4))
    load_state_dict(dynamic, static.state_dict(), strict=False)
    conv = dynamic.layer3[1].conv2
    assert isinstance(conv, DynamicConv)
    for k in range(4):
        assert torch.equal(conv.weight[k], static.layer3[1].conv2.weight)
    # The bank mixes with softmax weights that sum to one, so the pretrained
    # function is kept exactly whatever the (random) attention says.
    static.eval()
    dynamic.eval()
    x = torch.randn(2, 3, 45, 37)
    with torch.no_grad():
        for a, b in zip(dynamic(x), static(x)):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('kernel_num', [1, 4])
def test_odconv_resnet_takes_static_weights(kernel_num):
    static = _static_resnet18()
    od = ResNet(depth=18, block_conv_cfg=dict(type='mmext.ODConv', kernel_num=kernel_num))
    load_state_dict(od, static.state_dict(), strict=False)
    conv = od.layer2[0].conv1
    assert isinstance(conv, ODConv) and conv.weight.shape[0] == kernel_num
    for k in range(kernel_num):
        assert torch.equal(conv.weight[k], static.layer2[0].conv1.weight)
    # A bank-shaped tensor (an ODConv checkpoint) loads as it is.
    bank = torch.randn_like(conv.weight)
    conv.load_state_dict({**conv.state_dict(), 'weight': bank})
    assert torch.equal(conv.weight, bank)


def test_a_wrong_shape_is_still_a_mismatch():
    conv = DynamicConv(8, 16, 3, num_kernels=4)
    state = conv.state_dict()
    state['weight'] = torch.randn(16, 4, 3, 3)
    with pytest.raises(RuntimeError, match='size mismatch'):
        conv.load_state_dict(state)
