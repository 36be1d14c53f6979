"""Config loading shared by the train / test / image-demo entry points and the
demo, and the ``mmext::`` config prefix."""
import os
import os.path as osp

from mmengine.config import Config, DictAction  # noqa: F401  (re-exported for tools)

from .embedded import configs_root, default_data_root, to_embedded, walk_dicts

LIBRARIES = ('mmdet', 'mmseg')
MMEXT_PREFIX = 'mmext::'


def mmext_config_path(name):
    """Absolute path of the mmext config ``name``.

    Args:
        name (str): a path under mmext's configs, e.g.
            ``'se/retinanet_r50-se_fpn_1x_coco.py'`` (with or without the
            ``mmext::`` prefix).

    Returns:
        str: the file in the configs of the imported mmext (see
        :func:`mmext.utils.embedded.configs_root`).

    Raises:
        MMExtError: there is no such config.
    """
    from .errors import MMExtError
    if name.startswith(MMEXT_PREFIX):
        name = name[len(MMEXT_PREFIX):]
    root = configs_root()
    path = osp.join(root, name)
    if not osp.isfile(path):
        raise MMExtError(f"mmext::{name} is not an mmext config (no file {path}); the configs are "
                         f"listed in {root}")
    return path


def register_mmext_configs():
    """Make ``_base_ = 'mmext::<folder>/<config>.py'`` resolve in any config,
    the way ``mmdet::`` does. Called by ``import mmext``; idempotent.

    mmengine 0.10.7 knows a fixed table of packages (``MODULE2PACKAGE``) and,
    for a base of one of them, puts that package's scope on every dict of the
    base. That scope is right for mmdet's configs, whose types are mmdet's,
    but mmext's configs are mmdet or mmseg configs (their ``default_scope``)
    that name mmext components as ``mmext.<Name>``: an ``mmext`` scope would
    send ``RetinaNet`` to mmext's registry. So an ``mmext::`` base is read like
    a relative ``_base_`` of the same file: from the configs of the imported
    mmext (installed or checkout), with no scope added. This wraps mmengine's
    ``Config._get_cfg_path`` (where ``_base_`` names are resolved); other
    ``pkg::`` names go to mmengine unchanged.
    """
    from mmengine.config import utils as config_utils
    config_utils.MODULE2PACKAGE.setdefault('mmext', 'mmext')
    original = Config._get_cfg_path
    if getattr(original, 'mmext_prefix', False):
        return

    def _get_cfg_path(cfg_path, filename):
        if cfg_path.startswith(MMEXT_PREFIX):
            return mmext_config_path(cfg_path), None
        return original(cfg_path, filename)

    _get_cfg_path.mmext_prefix = True
    Config._get_cfg_path = staticmethod(_get_cfg_path)


def resolve_config_path(path):
    """A config argument of the tools as a file path: ``mmext::x/y.py`` and
    other ``<package>::x/y.py`` names (``mmdet::``, ``mmseg::``) are looked up
    in the installed package, anything else is a file path.

    Raises:
        MMExtError: the file does not exist.
    """
    from .errors import MMExtError
    if '::' in path:
        try:
            path, _ = Config._get_cfg_path(path, '')
        except (AssertionError, ValueError, ModuleNotFoundError, FileNotFoundError) as exc:
            raise MMExtError(f'cannot find config {path}: {exc}') from None
    if not osp.isfile(path):
        raise MMExtError(f'config file not found: {path}')
    return path


def library_of(cfg):
    """The OpenMMLab library a config belongs to, from its ``default_scope``."""
    scope = cfg.get('default_scope', None)
    if scope not in LIBRARIES:
        raise ValueError(f"config has default_scope={scope!r}; mmext tools run mmdet and mmseg "
                         f"configs (default_scope 'mmdet' or 'mmseg')")
    return scope


def register_library(cfg):
    """Register the modules of the config's library (and mmext's scope) so
    that the runner can build everything the config names."""
    lib = library_of(cfg)
    if lib == 'mmdet':
        from mmdet.utils import register_all_modules
    else:
        from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    import mmext.registry  # noqa: F401  (adds the 'mmext' scope to the registry tree)
    return lib


def load_config(path, cfg_options=None, embedded=None, data_root=None):
    """Read a config (a file, or ``mmext::`` / ``mmdet::`` / ``mmseg::`` name),
    optionally switch it to the embedded data, then apply ``--cfg-options``
    last so they win over the embedded preset.

    Raises:
        MMExtError: the config does not exist.
    """
    cfg = Config.fromfile(resolve_config_path(path))
    library_of(cfg)
    if embedded:
        cfg = to_embedded(cfg, preset=embedded, data_root=data_root, cfg_options=cfg_options)
    elif cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg


def ensure_embedded_data(cfg):
    """Generate the embedded data the first time a run needs it. Data already
    there (complete, whatever its settings) is used as it is: a folder made with
    ``tools/generate_data.py --num-train 5000`` must not be regenerated."""
    info = cfg.get('embedded')
    if not info:
        return
    import fcntl
    import json

    from mmext.datasets.embedded import META_FILE, generate
    root = info.get('data_root') or default_data_root()
    os.makedirs(root, exist_ok=True)
    # Every rank of a distributed run gets here; one writes, the others wait
    # and then find the data complete.
    with open(osp.join(root, '.generate.lock'), 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        meta = osp.join(root, META_FILE)
        if osp.isfile(meta):
            with open(meta) as f:
                if json.load(f).get('complete'):
                    return
        generate(root)


def cpu_only_fixes(cfg, distributed):
    """Make a multi-process run work on a machine without CUDA (gloo backend).

    mmengine 0.10.7 assumes GPUs once a launcher is set: ``init_dist`` calls
    ``torch.cuda.set_device`` and the DDP wrapper gets ``device_ids=[rank]``;
    and SyncBN has no CPU kernel. Single-process CPU runs need none of this
    (mmengine already reverts SyncBN to BN there).
    """
    import torch
    import torch.distributed as dist
    if torch.cuda.is_available() or not distributed:
        return
    for d in walk_dicts(cfg.get('model', {})):
        if d.get('type') in ('SyncBN', 'MMSyncBN'):
            d['type'] = 'BN'
    cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})['backend'] = 'gloo'
    wrapper = cfg.get('model_wrapper_cfg') or dict(type='MMDistributedDataParallel')
    wrapper.update(device_ids=None, broadcast_buffers=False,
                   find_unused_parameters=cfg.get('find_unused_parameters', False))
    cfg.model_wrapper_cfg = wrapper
    if cfg.get('launcher') == 'pytorch' and not dist.is_initialized():
        # The runner skips its own (CUDA-only) init when a group exists.
        dist.init_process_group(backend='gloo')


def check_data(cfg, splits=('train_dataloader', 'val_dataloader', 'test_dataloader')):
    """Fail early, in one line, when a dataset's files are not where the
    config says (instead of a FileNotFoundError from inside a worker)."""
    from .errors import MMExtError
    for split in splits:
        loader = cfg.get(split)
        if not loader or 'dataset' not in loader:
            continue
        ds = loader.dataset
        root = ds.get('data_root', '') or ''
        if root and not osp.isdir(root):
            hint = ('generate it with `python tools/generate_data.py` or pass --embedded'
                    if 'embedded' in root else
                    'download the dataset there or set data_root (see docs/get_started.md)')
            raise MMExtError(f'{split}: data root {root} does not exist; {hint}')
        ann = ds.get('ann_file', '')
        if ann:
            path = ann if osp.isabs(ann) else osp.join(root, ann)
            if not osp.isfile(path):
                raise MMExtError(f'{split}: annotation file {path} does not exist')


def add_run_args(parser):
    """The arguments tools/train.py and tools/test.py share."""
    parser.add_argument('--work-dir', help='the folder for logs, checkpoints and metrics')
    parser.add_argument(
        '--embedded', nargs='?', const='demo', choices=['demo', 'smoke'],
        help='run on the embedded data (generated if missing) at CPU size')
    parser.add_argument('--data-root', help='embedded data folder (default data/embedded)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, e.g. train_cfg.max_iters=100')
    parser.add_argument(
        '--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none',
        help='job launcher')
    # torch.distributed.launch passes --local-rank; torchrun sets LOCAL_RANK
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    return parser


def parse_run_args(parser, argv=None):
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def prepare_run_cfg(args):
    """Config of a tools/ run: loaded, library registered, launcher and work
    dir set. Returns ``(cfg, library)``."""
    cfg = load_config(args.config, args.cfg_options, args.embedded, args.data_root)
    lib = register_library(cfg)
    cfg.launcher = args.launcher
    cpu_only_fixes(cfg, distributed=args.launcher != 'none')
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    return cfg, lib


def build_runner(cfg):
    """The config's runner, with every BatchNorm of its model guarded so that
    one value per channel in training (one image per device) stops with a
    one-line error naming the norm (``guard_batch_norms``)."""
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner

    from mmext.models.layers.unit_norm import guard_batch_norms
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    guard_batch_norms(runner.model)
    return runner
