"""The shared backbone checks, for every backbone mmext registers, found in the
registry (no list of classes here).

A registered backbone is every class in mmext's ``MODELS`` registry that
subclasses :class:`~mmext.models.backbones.DenseBackbone` or mmdet's / mmseg's
``ResNet``. Each declares, in its own class body, ``backbone_examples``: a
tuple of keyword-argument dicts of small instances. Every example goes
through :func:`backbone_checks.check_backbone_contract` (output contract at
odd sizes against ``out_channels`` / ``out_strides``, gradients, bf16,
``frozen_stages`` at build / after ``train()`` / after a checkpoint load,
``norm_eval``, ``with_cp`` and drop path, stage-argument errors, one image per
device). A registered backbone without its own declaration fails
:func:`test_every_backbone_declares_its_examples`, so a new design cannot skip
the checks.
"""
import functools

import pytest
from backbone_checks import check_backbone_contract
from mmdet.models.backbones import ResNet as DetResNet
from mmseg.models.backbones import ResNet as SegResNet

import mmext.models  # noqa: F401  (registration)
from mmext.models.backbones import DenseBackbone
from mmext.registry import MODELS

BACKBONE_BASES = (DenseBackbone, DetResNet, SegResNet)
BACKBONES = {name: cls for name, cls in sorted(MODELS.module_dict.items())
             if isinstance(cls, type) and issubclass(cls, BACKBONE_BASES)}
EXAMPLES = [(name, i, kwargs) for name, cls in BACKBONES.items()
            for i, kwargs in enumerate(cls.__dict__.get('backbone_examples', ()))
            if isinstance(kwargs, dict)]


def test_discovery_finds_both_families():
    assert DenseBackbone in {c for cls in BACKBONES.values() for c in cls.__mro__}
    assert DetResNet in {c for cls in BACKBONES.values() for c in cls.__mro__}


@pytest.mark.parametrize('name', list(BACKBONES))
def test_every_backbone_declares_its_examples(name):
    cls = BACKBONES[name]
    examples = cls.__dict__.get('backbone_examples')
    assert examples, (f'{name} declares no backbone_examples in its class body: give the keyword '
                      'arguments of a small instance (see DenseBackbone.backbone_examples)')
    assert isinstance(examples, tuple) and all(isinstance(e, dict) for e in examples), examples


@pytest.mark.parametrize('name,index,kwargs', EXAMPLES,
                         ids=[f'{name}-{i}' for name, i, _ in EXAMPLES])
def test_backbone_contract(name, index, kwargs, tmp_path):
    check_backbone_contract(functools.partial(BACKBONES[name], **kwargs), tmp_path)


def test_a_backbone_without_declarations_is_refused():
    """The post-init check of DenseBackbone: a subclass that sets no
    ``out_channels`` / ``out_strides`` cannot be built."""
    import torch.nn as nn

    class Undeclared(DenseBackbone):

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.stages = nn.ModuleList(nn.Conv2d(3, 3, 1) for _ in range(4))

        def stage_modules(self, index):
            return [self.stages[index]]

        def forward(self, x):
            return tuple(x for _ in self.out_indices)

    with pytest.raises(TypeError, match=r'Undeclared.__init__ must set out_channels'):
        Undeclared()

    class NoForward(DenseBackbone):

        def stage_modules(self, index):
            return []

    with pytest.raises(TypeError, match='abstract'):
        NoForward()
