"""Every official checkpoint layout mmext converts, by name.

Three kinds of design have official classification checkpoints:

* the dense backbones (VAN, MogaNet, HorNet, MPViT, HAT-Net, FCViT, MViTv2):
  their class converts through :meth:`DenseBackbone.convert_official`;
* SDA-ResNet: :meth:`SDAResNet.convert_official`;
* ResNets carrying an attention plugin or a dynamic convolution (SE, ECA,
  CBAM, ODConv), released as torchvision-style ResNets with extra modules
  per block: no class of their own, so each is a named layout here
  (``'SE-ResNet'`` ...), converted to mmdet's / mmext's ResNet with the
  plugin (or ODConv) config of the design;
* PVTv2, whose configs use MMDetection's class: mmdet's converter.

The key layouts are those of ``checkpoint_layouts.md`` of the project brief;
the sources are named per layout below.
"""
import re

import torch

from mmext.utils.checkpoint import key_mismatch
from mmext.utils.errors import MMExtError

#: The ImageNet classifier of torchvision-style ResNets.
RESNET_CLASSIFIER = ('fc.', )


def _linear_to_conv1x1(value):
    """A Linear weight ``(out, in)`` as the weight of the equivalent 1x1
    convolution ``(out, in, 1, 1)``; other tensors unchanged."""
    return value[:, :, None, None] if value.dim() == 2 else value


def _rename(state_dict, rules, reshape=None):
    """Apply the first matching ``(pattern, replacement)`` of ``rules`` to
    each key, drop the classifier, and pass renamed tensors through
    ``reshape``."""
    out = {}
    for key, value in state_dict.items():
        if key.startswith(RESNET_CLASSIFIER):
            continue
        for pattern, repl in rules:
            new, n = re.subn(pattern, repl, key)
            if n:
                key, value = new, (reshape(value) if reshape else value)
                break
        out[key] = value
    return out


def convert_se_resnet(state_dict):
    """SE-ResNet (Hu et al., CVPR 2018) to mmdet's ResNet with
    ``plugins=[dict(cfg=dict(type='mmext.SE'), position='after_conv3')]``.

    Official layout: torchvision ResNet names plus ``layer{s}.{b}.se.fc.{0,2}``
    (``nn.Linear``, as in senet.pytorch) or the 1x1-conv equivalents
    ``se.fc1`` / ``se.fc2`` (timm's ``seresnet``). mmext's SE (mmdet's
    ``SELayer``) holds them as ``se.conv1.conv`` / ``se.conv2.conv`` of shape
    ``(out, in, 1, 1)``. A release without FC biases (senet.pytorch) gets
    zero biases, which computes the same function.

    Args:
        state_dict (dict[str, Tensor]): Official weights (``module.``
            already removed).

    Returns:
        dict[str, Tensor]: mmext keys; ``fc.*`` (classifier) dropped.
    """
    out = _rename(state_dict, [(r'\.se\.(?:fc\.0|fc1)\.', '.se.conv1.conv.'),
                               (r'\.se\.(?:fc\.2|fc2)\.', '.se.conv2.conv.')],
                  reshape=_linear_to_conv1x1)
    for key in [k for k in out if re.search(r'\.se\.conv[12]\.conv\.weight$', k)]:
        bias = key[:-len('weight')] + 'bias'
        if bias not in out:
            out[bias] = out[key].new_zeros(out[key].shape[0])
    return out


def convert_eca_resnet(state_dict):
    """ECA-Net ResNet (Wang et al., CVPR 2020; BangguWu/ECANet) to mmdet's
    ResNet with :func:`mmext.models.plugins.eca.eca_plugins`: the official
    ``layer{s}.{b}.eca.conv.weight`` ``(1, 1, k)`` is mmext's ECA as it is;
    only the classifier is dropped."""
    return _rename(state_dict, [])


def convert_cbam_resnet(state_dict):
    """CBAM ResNet (Woo et al., ECCV 2018; Jongchan/attention-module) to
    mmdet's ResNet with ``plugins=[dict(cfg=dict(type='mmext.CBAM'),
    position='after_conv3')]``.

    Official: ``cbam.ChannelGate.mlp.{1,3}`` (``nn.Linear``, after a
    Flatten) and ``cbam.SpatialGate.spatial.{conv,bn}``; mmext:
    ``cbam.channel_mlp.{0,1}.conv`` (1x1 convs) and
    ``cbam.spatial_conv.{conv,bn}``.
    """
    rules = [(r'\.cbam\.ChannelGate\.mlp\.1\.', '.cbam.channel_mlp.0.conv.'),
             (r'\.cbam\.ChannelGate\.mlp\.3\.', '.cbam.channel_mlp.1.conv.'),
             (r'\.cbam\.SpatialGate\.spatial\.', '.cbam.spatial_conv.')]
    return _rename(state_dict, rules, reshape=_linear_to_conv1x1)


def convert_odconv_resnet(state_dict):
    """OD-ResNet (Li et al., ICLR 2022; OSVAI/ODConv ``od_resnet.py``) to
    ``mmext.ResNet`` with ``block_conv_cfg=dict(type='mmext.ODConv', ...)``:
    every block conv ``layer{s}.{b}.conv{1,2,3}`` holds ``weight``
    ``(kernel_num, out, in/groups, k, k)`` and ``attention.{fc, bn,
    channel_fc, filter_fc, spatial_fc, kernel_fc}``, the names of
    :class:`mmext.models.layers.ODConv`; only the classifier is dropped."""
    return _rename(state_dict, [])


def convert_pvtv2(state_dict):
    """PVTv2 (Wang et al., CVMJ 2022; whai362/PVT) to MMDetection's
    ``PyramidVisionTransformerV2``, by mmdet's own ``pvt_convert`` (what its
    ``init_cfg`` Pretrained loading applies on the fly): ``patch_embed{i}``,
    ``block{i}.{j}`` (``attn.q`` and ``attn.kv`` joined into one input
    projection), ``norm{i}`` become ``layers.{i-1}.{0,1,2}``; ``head.*``
    dropped."""
    from mmdet.models.backbones.pvt import pvt_convert
    return dict(pvt_convert(state_dict))


class OfficialLayout:
    """One convertible official layout.

    Args:
        name (str): What the converter CLI calls it.
        convert (callable): Official state dict to mmext keys, classifier
            dropped.
        model_cls (type, optional): The mmext class the weights are for,
            when there is one (``--arch`` builds it).
        arch_arg (str): The argument of ``model_cls`` that ``--arch`` sets.
        config (str, optional): A config under ``configs/`` whose backbone
            takes the converted weights.
    """

    def __init__(self, name, convert, model_cls=None, arch_arg='arch', config=None):
        self.name = name
        self.convert = convert
        self.model_cls = model_cls
        self.arch_arg = arch_arg
        self.config = config

    def build(self, arch, **kwargs):
        """The mmext model of variant ``arch`` (for checking a conversion)."""
        if self.model_cls is None:
            raise MMExtError(f'{self.name} has no --arch; pass --config with a config whose '
                             f'backbone takes it (e.g. configs/{self.config})')
        value = int(arch) if self.arch_arg == 'depth' else arch
        return self.model_cls(**{self.arch_arg: value}, **kwargs)


RESNET_LAYOUTS = {
    'SE-ResNet': OfficialLayout('SE-ResNet', convert_se_resnet,
                                config='se/retinanet_r50-se_fpn_1x_coco.py'),
    'ECA-ResNet': OfficialLayout('ECA-ResNet', convert_eca_resnet,
                                 config='eca/retinanet_r50-eca_fpn_1x_coco.py'),
    'CBAM-ResNet': OfficialLayout('CBAM-ResNet', convert_cbam_resnet,
                                  config='cbam/retinanet_r50-cbam_fpn_1x_coco.py'),
    'ODConv-ResNet': OfficialLayout('ODConv-ResNet', convert_odconv_resnet,
                                    config='odconv/retinanet_r50-odconv1x_fpn_1x_coco.py'),
}


def _dense_convert(cls):
    def convert(state_dict):
        return {k: v for k, v in cls.convert_official(dict(state_dict)).items()
                if not k.startswith(cls.official_drop_prefixes)}
    return convert


def official_layouts():
    """Every layout the converter knows: ``{name: OfficialLayout}``, the
    registered classes with a ``convert_official`` classmethod (the dense
    backbones, SDAResNet) under their registered names,
    :data:`RESNET_LAYOUTS` and ``'PVTv2'``."""
    import mmext.models  # noqa: F401  (registration)
    from mmext.models.backbones.base_backbone import DenseBackbone
    from mmext.models.backbones.sda_resnet import SDAResNet
    from mmext.registry import MODELS

    layouts = {}
    for name, cls in MODELS.module_dict.items():
        if isinstance(cls, type) and issubclass(cls, DenseBackbone):
            layouts[name] = OfficialLayout(name, _dense_convert(cls), model_cls=cls)
    layouts['SDAResNet'] = OfficialLayout('SDAResNet', SDAResNet.convert_official,
                                          model_cls=SDAResNet, arch_arg='depth',
                                          config='sda/retinanet_r86-sda_fpn_1x_coco.py')
    layouts.update(RESNET_LAYOUTS)
    layouts['PVTv2'] = OfficialLayout('PVTv2', convert_pvtv2,
                                      config='pvtv2/retinanet_pvtv2-b0_fpn_1x_coco.py')
    return layouts


def _norm(name):
    return re.sub(r'[-_]', '', name.split('.')[-1]).lower()


def get_official_layout(name):
    """The layout called ``name`` (``'VAN'``, ``'mmext.VAN'``, ``'SE-ResNet'``;
    case, ``-`` and ``_`` ignored).

    Raises:
        MMExtError: no design of that name has an official layout (the
            message lists them).
    """
    layouts = official_layouts()
    found = {_norm(k): v for k, v in layouts.items()}.get(_norm(name))
    if found is None:
        raise MMExtError(f'{name} has no official checkpoint layout mmext converts; known: '
                         f"{', '.join(sorted(layouts, key=str.lower))}")
    return found


def check_against(model, converted):
    """Keys and shapes of ``converted`` against ``model``.

    Returns:
        tuple[list[str], list[str]]: Missing and unexpected keys.

    Raises:
        MMExtError: a tensor's shape differs from the model's.
    """
    own = model.state_dict()
    bad = [f'{k}: {tuple(v.shape)} vs {tuple(own[k].shape)}' for k, v in converted.items()
           if k in own and isinstance(v, torch.Tensor) and v.shape != own[k].shape]
    if bad:
        raise MMExtError(f'{len(bad)} converted tensors do not fit {type(model).__name__} '
                         f"({'; '.join(bad[:3])}); is the arch / config right?")
    return key_mismatch(model, converted)
