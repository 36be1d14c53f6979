"""Every official checkpoint layout mmext converts, by name, discovered from
the designs' own files.

No design is named here. :func:`official_layouts` reads two declarations
(protocols in the sense of :mod:`mmext.models.layers.protocols`):

* ``convert_official(state_dict)`` (a classmethod) on a class registered in
  the mmext ``MODELS`` registry: the class has an official classification
  checkpoint whose weights it takes itself (the dense backbones through
  :meth:`DenseBackbone.convert_official`, SDA-ResNet). The layout has the
  registered name; ``--arch`` builds the class with its ``arch`` argument,
  or ``depth`` for an mmdet-style ResNet (no ``arch`` argument). Keys under
  the class's ``official_drop_prefixes`` (the classifier) are dropped.
* ``official_layouts`` (a tuple of :class:`OfficialLayout`, class attribute)
  on a registered class, for layouts whose weights load into another model
  than the class: a ResNet carrying the plugin or dynamic convolution (SE,
  ECA, CBAM, ODConv: torchvision-style ResNets with extra modules per block),
  checked against a config's backbone. The same attribute of an
  :class:`~mmext.models.upstream.UpstreamDesign` (a design whose configs
  build another library's class, e.g. mmdet's PVTv2 in
  ``mmext/models/backbones/pvt.py``) is read too.

Each converter lives with its design, with the source of its key layout
(``checkpoint_layouts.md`` of the project brief). The helpers below are
shared by the ResNet-layout converters.
"""
import dataclasses
import inspect
import re

import torch

from mmext.utils.checkpoint import key_mismatch
from mmext.utils.errors import MMExtError

#: The ImageNet classifier of torchvision-style ResNets.
RESNET_CLASSIFIER = ('fc.', )


def linear_to_conv1x1(value):
    """A Linear weight ``(out, in)`` as the weight of the equivalent 1x1
    convolution ``(out, in, 1, 1)``; other tensors unchanged."""
    return value[:, :, None, None] if value.dim() == 2 else value


def rename_resnet_keys(state_dict, rules=(), reshape=None):
    """Keys of a torchvision-style ResNet checkpoint renamed for mmext.

    Args:
        state_dict (dict[str, Tensor]): Official weights (``module.``
            already removed).
        rules (Sequence[tuple[str, str]]): ``(pattern, replacement)``
            regexes; the first that matches a key renames it. Defaults to
            none (keys kept).
        reshape (callable, optional): Applied to each renamed tensor (e.g.
            :func:`linear_to_conv1x1`). Defaults to None.

    Returns:
        dict[str, Tensor]: The renamed weights without the classifier
        (:data:`RESNET_CLASSIFIER`).
    """
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


@dataclasses.dataclass(frozen=True)
class OfficialLayout:
    """One convertible official layout (what a design declares).

    Attributes:
        name (str): What the converter CLI calls it (``TYPE``), unique over
            all designs, e.g. ``'SE-ResNet'``.
        convert (callable): Official state dict (``module.`` removed) to
            mmext keys, classifier dropped.
        model_cls (type, optional): The mmext class the weights are for, when
            there is one (``--arch`` builds it). Defaults to None.
        arch_arg (str): The argument of ``model_cls`` that ``--arch`` sets
            (``'depth'`` is passed as an int). Defaults to ``'arch'``.
        config (str, optional): A config under ``configs/`` whose backbone
            takes the converted weights (named when ``--arch`` cannot be
            used). Defaults to None.

    Example:
        >>> class MyPlugin(BaseModule):
        ...     official_layouts = (OfficialLayout(
        ...         'MyPlugin-ResNet', convert_my_plugin_resnet,
        ...         config='my_plugin/retinanet_r50-my-plugin_fpn_1x_coco.py'), )
    """

    name: str
    convert: object
    model_cls: type = None
    arch_arg: str = 'arch'
    config: str = None

    def build(self, arch, **kwargs):
        """The mmext model of variant ``arch`` (for checking a conversion).

        Raises:
            MMExtError: The layout has no class to build (use ``--config``).
        """
        if self.model_cls is None:
            raise MMExtError(f'{self.name} has no --arch; pass --config with a config whose '
                             f'backbone takes it (e.g. configs/{self.config})')
        value = int(arch) if self.arch_arg == 'depth' else arch
        return self.model_cls(**{self.arch_arg: value}, **kwargs)


def _own_convert(cls):
    drop = tuple(getattr(cls, 'official_drop_prefixes', ()))

    def convert(state_dict):
        return {k: v for k, v in cls.convert_official(dict(state_dict)).items()
                if not k.startswith(drop)}
    return convert


def declared_layouts(name, obj):
    """The layouts ``obj`` (a registered class, registered as ``name``, or an
    upstream design) declares: its ``convert_official`` classmethod, if any,
    as a layout called ``name``, then its ``official_layouts``."""
    found = []
    if isinstance(obj, type) and callable(getattr(obj, 'convert_official', None)):
        arch_arg = 'arch' if 'arch' in inspect.signature(obj.__init__).parameters else 'depth'
        found.append(OfficialLayout(name, _own_convert(obj), model_cls=obj, arch_arg=arch_arg))
    found.extend(getattr(obj, 'official_layouts', ()))
    return found


def official_layouts():
    """Every layout the converter knows, from the designs' declarations (see
    the module docstring): the classes in the mmext ``MODELS`` registry and
    the upstream designs.

    Returns:
        dict[str, OfficialLayout]: By name, in discovery order.

    Raises:
        MMExtError: Two designs declare the same name.
    """
    import mmext.models  # noqa: F401  (registration, the upstream designs)
    from mmext.models.upstream import upstream_designs
    from mmext.registry import MODELS

    sources = list(MODELS.module_dict.items())
    sources += [(design.name, design) for design in upstream_designs()]
    layouts = {}
    for name, obj in sources:
        for layout in declared_layouts(name, obj):
            if layouts.setdefault(layout.name, layout) is not layout:
                raise MMExtError(f'two designs declare the official layout {layout.name!r}')
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
