"""Run any full-scale COCO / ADE20K config on the embedded data.

``to_embedded(cfg)`` is the one mechanism behind ``tools/train.py --embedded``,
``tools/test.py --embedded``, the demo and every smoke test: a design ships only
its real-dataset configs, and this swaps in the embedded data, a CPU-sized
image scale and a short schedule.

What is swapped, and why:

* data: the dataloaders and evaluators are replaced by the ones in
  ``configs/_base_/datasets/embedded_*.py`` (stock ``CocoDataset`` /
  ``ADE20KDataset``, restricted by class name to the embedded classes);
* ``num_classes`` of every head follows the embedded class list;
* pretrained weights cannot be downloaded here, so ``Pretrained`` init is
  dropped and the backbone trains from scratch: frozen stages are unfrozen and
  ``norm_eval`` is switched off (frozen random weights and BN layers stuck at
  their initial statistics are what pretrained-weight configs assume);
* the schedule becomes iteration based (``configs/_base_/schedules/embedded.py``);
* a test-time augmentation pipeline (``--tta``) resizes around the embedded
  test scale, keeping the ratios of its sizes;
* presets shrink the work further: ``demo`` is the README's 15-minute run,
  ``smoke`` is a few iterations on tiny images for tests.

The bases are read from :func:`configs_root`, ``mmext/.mim/configs`` (a link to
the checkout's ``configs/`` in an editable install, a copy in a wheel).
"""
import copy
import os
import os.path as osp

from mmengine.config import Config, ConfigDict

PRESETS = ('demo', 'smoke')
TASKS = ('coco_detection', 'coco_instance', 'ade20k')

# Per task and preset: image scale, batch size, learning rate and iterations.
# Kept in one table so a reader sees the CPU-sizing choices (Mask R-CNN's
# proposal budgets are in _shrink_model_budget).
_PRESET_TABLE = {
    # Measured on a 2-core CPU (docs/get_started.md): 1.6 s (RetinaNet),
    # 2.0 s (Mask R-CNN) and 1.7 s (UperNet) per iteration, so the runs take
    # about 17, 17 and 13 minutes.
    'demo': dict(
        coco_detection=dict(scale=(384, 320), batch_size=8, lr=2e-3, max_iters=560,
                            val_interval=280),
        coco_instance=dict(scale=(384, 320), batch_size=4, lr=1e-3, max_iters=480,
                           val_interval=240),
        ade20k=dict(scale=(640, 320), crop=(256, 256), batch_size=8, lr=1e-3, max_iters=400,
                    val_interval=200),
    ),
    'smoke': dict(
        coco_detection=dict(scale=(160, 128), batch_size=2, lr=1e-3, max_iters=4,
                            val_interval=4, num_train=8, num_val=4),
        coco_instance=dict(scale=(160, 128), batch_size=2, lr=1e-3, max_iters=4,
                           val_interval=4, num_train=8, num_val=4),
        ade20k=dict(scale=(160, 128), crop=(96, 96), batch_size=2, lr=1e-3, max_iters=4,
                    val_interval=4, num_train=8, num_val=4),
    ),
}


def configs_root():
    """The folder of mmext's configs, ``mmext/.mim/configs``: the OpenMMLab mim
    layout that setup.py fills, with a symlink to the checkout's ``configs/``
    in an editable install (``tools/setup_env.sh``) and a copy in a wheel.

    Raises:
        MMExtError: It is missing (mmext imported from a folder that was never
            installed, or a wheel built without setup.py's hook).
    """
    mim = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), '.mim', 'configs')
    if osp.isdir(mim):
        return mim
    from .errors import MMExtError
    raise MMExtError(f'mmext has no configs at {mim}: install it, `pip install -e .` in a '
                     'checkout (tools/setup_env.sh does) or `pip install .`')


def default_data_root():
    """``$MMEXT_DATA``, else ``data/embedded`` under the current folder
    (absolute), where mmdet's and mmseg's configs expect their data too."""
    if os.environ.get('MMEXT_DATA'):
        return os.environ['MMEXT_DATA']
    return osp.abspath(osp.join('data', 'embedded'))


def detect_task(cfg):
    """Which embedded dataset a config needs: segmentation configs (mmseg
    scope) get ADE20K, detectors with a mask head get COCO instances."""
    scope = cfg.get('default_scope', None)
    if scope == 'mmseg':
        return 'ade20k'
    if scope not in (None, 'mmdet'):
        raise ValueError(f"--embedded supports mmdet and mmseg configs, got default_scope='{scope}'")
    return 'coco_instance' if _find_key(cfg.get('model', {}), 'mask_head') else 'coco_detection'


def _find_key(node, key):
    if isinstance(node, dict):
        return key in node or any(_find_key(v, key) for v in node.values())
    if isinstance(node, (list, tuple)):
        return any(_find_key(v, key) for v in node)
    return False


def walk_dicts(node):
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from walk_dicts(v)
    elif isinstance(node, (list, tuple)):
        for v in node:
            yield from walk_dicts(v)


def _strip_pretrained(model):
    for d in walk_dicts(model):
        if 'pretrained' in d:
            d['pretrained'] = None
        init = d.get('init_cfg')
        if isinstance(init, dict) and init.get('type') == 'Pretrained':
            d['init_cfg'] = None
        elif isinstance(init, list):
            d['init_cfg'] = [i for i in init if i.get('type') != 'Pretrained'] or None


def _train_from_scratch(backbone):
    if 'frozen_stages' in backbone:
        backbone['frozen_stages'] = -1
    if 'norm_eval' in backbone:
        backbone['norm_eval'] = False


def _set_num_classes(model, num_classes):
    for name, node in model.items():
        if name == 'backbone':
            continue  # classification heads of backbones keep their own size
        for d in walk_dicts(node):
            if 'num_classes' in d:
                d['num_classes'] = num_classes


def _resize_pipeline(pipeline, scale, crop=None):
    for t in pipeline:
        if t['type'] in ('Resize', 'RandomResize', 'mmdet.Resize', 'mmseg.RandomResize'):
            t['scale'] = tuple(scale)
        if crop is not None and t['type'] in ('RandomCrop', 'mmseg.RandomCrop'):
            t['crop_size'] = tuple(crop)


def innermost_dataset(dataset):
    """The dataset cfg a chain of wrapper cfgs (``RepeatDataset``,
    ``ClassBalancedDataset``, ... each holding ``dataset``) ends in; the
    ``pipeline`` of a wrapped dataset lives there."""
    while 'dataset' in dataset:
        dataset = dataset['dataset']
    return dataset


def _test_scale(loader):
    """``scale`` of the first resize in a test dataloader's pipeline, or None."""
    dataset = innermost_dataset((loader or {}).get('dataset', {}))
    for t in dataset.get('pipeline', []):
        if 'Resize' in str(t.get('type', '')) and 'scale' in t:
            return tuple(t['scale'])
    return None


def _resize_tta(tta_pipeline, ref_scale, scale):
    """Put the TTA resizes around the embedded test scale, keeping their ratios,
    instead of running a CPU-sized model at full-scale sizes: mmdet's scales
    are multiples of its test scale (RetinaNet's: 1, 0.5 and 1.5 x (1333, 800)),
    mmseg's are factors of the image size (ADE20K's: 0.5 to 1.75), which
    become the same factors of the embedded scale."""
    for t in walk_dicts(tta_pipeline):
        if 'Resize' not in str(t.get('type', '')):
            continue
        if 'scale' in t and ref_scale:
            t['scale'] = tuple(max(1, round(s * n / r))
                               for s, n, r in zip(scale, t['scale'], ref_scale))
        elif isinstance(t.get('scale_factor'), (int, float)):
            factor = t.pop('scale_factor')
            t['scale'] = tuple(max(1, round(s * factor)) for s in scale)


def _shrink_model_budget(model, task):
    """Mask R-CNN's default proposal budget (2000 pre-NMS, 512 sampled RoIs)
    dominates CPU time on small images with a handful of objects."""
    if task != 'coco_instance':
        return
    train_cfg, test_cfg = model.get('train_cfg', {}), model.get('test_cfg', {})
    if 'rpn_proposal' in train_cfg:
        train_cfg.rpn_proposal.update(nms_pre=600, max_per_img=300)
    if 'rcnn' in train_cfg and 'sampler' in train_cfg.rcnn:
        train_cfg.rcnn.sampler.num = 128
    if 'rpn' in test_cfg:
        test_cfg.rpn.update(nms_pre=300, max_per_img=100)
    if 'rcnn' in test_cfg:
        test_cfg.rcnn.max_per_img = 50


def fit_schedule(param_scheduler, planned_iters, max_iters):
    """An iteration-based schedule written for ``planned_iters`` iterations,
    fitted to ``max_iters``.

    A scheduler that ends with training (``end >= planned_iters``) still
    does: its ``end``, and ``T_max`` when it has one, become ``max_iters``.
    One that ends earlier is the warm-up: it takes ``min(100, max_iters // 10)``
    iterations, and is left out below 2 (mmengine's ``LinearLR`` over a
    single step lowers the lr and never raises it again; runs this short need
    no warm-up).

    Args:
        param_scheduler (list[dict]): schedulers with integer ``begin`` / ``end``
            in iterations, e.g. ``configs/_base_/schedules/embedded.py``'s.
        planned_iters (int): the ``train_cfg.max_iters`` they were written for.
        max_iters (int): the iterations of the run.

    Returns:
        list[dict]: new scheduler dicts (the input is not changed).
    """
    warmup = min(100, max_iters // 10)
    schedulers = []
    for sched in copy.deepcopy(list(param_scheduler)):
        if sched['end'] >= planned_iters:
            sched['end'] = max_iters
            if 'T_max' in sched:
                sched['T_max'] = max_iters
        elif warmup < 2:
            continue
        else:
            sched['end'] = warmup
        schedulers.append(sched)
    return schedulers


def embedded_base(task):
    """Path of the embedded-data base of ``task`` (one of :data:`TASKS`)."""
    return osp.join(configs_root(), '_base_', 'datasets', f'embedded_{task}.py')


def to_embedded(cfg, preset='demo', data_root=None, keep_pretrained=False, cfg_options=None):
    """Return a copy of ``cfg`` that trains and evaluates on the embedded data.

    Args:
        cfg (Config): a full-scale mmdet or mmseg config.
        preset (str): ``'demo'`` or ``'smoke'``.
        data_root (str, optional): folder holding ``coco/`` and ``ade/``;
            defaults to :func:`default_data_root`.
        keep_pretrained (bool): keep ``Pretrained`` init (for users who have
            the weights locally); otherwise train from scratch.
        cfg_options (dict, optional): ``--cfg-options`` overrides, merged
            before the schedule is laid out so that e.g.
            ``train_cfg.max_iters=300`` also shortens warm-up and decay.
    """
    if preset not in PRESETS:
        raise ValueError(f'unknown embedded preset {preset!r}, choose from {PRESETS}')
    task = detect_task(cfg)
    data_root = osp.abspath(data_root or default_data_root())
    settings = _PRESET_TABLE[preset][task]
    cfg = copy.deepcopy(cfg)
    full_test_scale = _test_scale(cfg.get('test_dataloader'))

    data_cfg = Config.fromfile(embedded_base(task))
    sched_cfg = Config.fromfile(osp.join(configs_root(), '_base_', 'schedules', 'embedded.py'))

    # The design's parameter groups (no weight decay on norms / layer scales)
    # belong to the model, not to the schedule, so they survive the swap.
    paramwise_cfg = copy.deepcopy(cfg.get('optim_wrapper', {}).get('paramwise_cfg'))
    # Whole sections are replaced, not merged: a COCO pipeline merged with an
    # embedded one by list index would be a mix of both.
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader', 'val_evaluator',
                'test_evaluator', 'train_cfg', 'val_cfg', 'test_cfg', 'param_scheduler',
                'optim_wrapper'):
        src = data_cfg if key in data_cfg else sched_cfg
        if key in src:
            cfg[key] = copy.deepcopy(src[key])
    for key in ('default_hooks', 'log_processor', 'auto_scale_lr', 'randomness'):
        if key in sched_cfg:
            cfg.merge_from_dict({key: sched_cfg[key].to_dict()
                                 if isinstance(sched_cfg[key], ConfigDict) else sched_cfg[key]})

    sub = ('ade', 'ADEChallengeData2016') if task == 'ade20k' else ('coco', )
    root = osp.join(data_root, *sub) + '/'
    for split in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg[split]
        loader.dataset.data_root = root
        loader.batch_size = settings['batch_size'] if split == 'train_dataloader' else 1
        _resize_pipeline(loader.dataset.pipeline, settings['scale'], settings.get('crop'))
        n = settings.get('num_train' if split == 'train_dataloader' else 'num_val')
        if n:
            loader.dataset.indices = n
        if preset == 'smoke':
            # Worker start-up costs more than a few tiny batches take to load.
            loader.num_workers = 0
            loader.persistent_workers = False
    for split in ('val_evaluator', 'test_evaluator'):
        if 'ann_file' in cfg[split]:
            cfg[split].ann_file = osp.join(root, 'annotations', 'instances_val2017.json')

    if cfg.get('tta_pipeline'):
        _resize_tta(cfg.tta_pipeline, full_test_scale, settings['scale'])
    # The preset's values over the schedule file's (the demo RetinaNet run's).
    cfg.merge_from_dict({
        'train_cfg.max_iters': settings['max_iters'],
        'train_cfg.val_interval': settings['val_interval'],
        'default_hooks.checkpoint.interval': settings['val_interval'],
        'optim_wrapper.optimizer.lr': settings['lr'],
    })
    if paramwise_cfg:
        cfg.optim_wrapper.paramwise_cfg = paramwise_cfg

    model = cfg.model
    classes = data_cfg.train_dataloader.dataset.metainfo.classes
    _set_num_classes(model, len(classes))
    if not keep_pretrained:
        _strip_pretrained(model)
        if 'backbone' in model:
            _train_from_scratch(model.backbone)
    if task == 'ade20k' and 'data_preprocessor' in model:
        model.data_preprocessor.size = tuple(settings['crop'])
        if 'test_cfg' in model:
            model.test_cfg = ConfigDict(mode='whole')
    _shrink_model_budget(model, task)
    if preset == 'smoke':
        # A few iterations leave every score under the usual 0.05 threshold;
        # keep all detections so evaluation runs its full code path.
        for d in walk_dicts(model.get('test_cfg', {})):
            if 'score_thr' in d:
                d['score_thr'] = 0.0
    hooks = [h for h in cfg.get('custom_hooks', []) if 'TrainingCurveHook' not in h['type']]
    cfg.custom_hooks = hooks + [dict(type='mmext.TrainingCurveHook')]
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    # A schedule the user gives in cfg_options is taken as written.
    if not any(str(k).split('.')[0] == 'param_scheduler' for k in cfg_options or {}):
        cfg.param_scheduler = fit_schedule(cfg.param_scheduler, sched_cfg.train_cfg.max_iters,
                                           cfg.train_cfg.max_iters)
    # Recorded so tools and the checkpoint meta tell an embedded run apart.
    cfg.embedded = dict(task=task, preset=preset, data_root=data_root)
    return cfg
