"""mmext's registries.

Each one is a child of the matching mmengine root registry under the scope
``mmext``. mmdet and mmseg registries are children of the same roots, so a
config of either library can name ``type='mmext.<Name>'``: mmengine imports
``mmext.registry``, finds the ``mmext`` child of the root and lazily imports the
``locations`` below to fill it. This is the cross-repository convention
mmpretrain uses. mmext registers models and hooks only: its embedded data is
read by mmdet's ``CocoDataset`` and mmseg's ``ADE20KDataset`` with their own
transforms, so it has no dataset or transform registry.
"""
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import Registry

MODELS = Registry('model', parent=MMENGINE_MODELS, scope='mmext', locations=['mmext.models'])
HOOKS = Registry('hook', parent=MMENGINE_HOOKS, scope='mmext', locations=['mmext.engine'])
