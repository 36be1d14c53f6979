"""Look at a config's data as the model gets it: every image after the split's
pipeline (resize, flip, crop) with its ground truth drawn by mmdet's
``DetLocalVisualizer`` (boxes, masks, class names) or mmseg's
``SegLocalVisualizer`` (the label map over the image).

By default the config is switched to the embedded data, exactly as
``tools/train.py --embedded`` does (same preset table, generated on first
use), so what is drawn is what an embedded run trains and evaluates on;
``full_data=True`` keeps the config's own dataset paths (COCO / ADE20K).
``tools/analysis_tools/browse_dataset.py`` is the command line.
"""
import dataclasses
import itertools
import os
import os.path as osp
import sys

import numpy as np

from mmext.utils.errors import MMExtError

SPLITS = ('train', 'val', 'test')
_COUNTER = itertools.count()


@dataclasses.dataclass
class BrowsedImage:
    """One drawn image.

    Attributes:
        index (int): Index in the dataset.
        img_path (str): Source image.
        out_file (str): PNG written (``None`` when not saved).
        shape (tuple): (H, W) after the pipeline, the size of the PNG.
        labels (list[int]): Ground-truth class indices drawn: one per
            instance for detection, the distinct classes of the label map for
            segmentation (ignored pixels excluded).
        library (str): 'mmdet' or 'mmseg', which visualizer drew it.
    """

    index: int
    img_path: str
    out_file: str
    shape: tuple
    labels: list
    library: str

    def describe(self):
        what = 'objects' if self.library == 'mmdet' else 'classes'
        return f'{self.shape[1]}x{self.shape[0]}, {len(self.labels)} {what}'


def display_available():
    """Whether a window can be opened (an X11 / Wayland display on Linux)."""
    if sys.platform.startswith('linux'):
        return bool(os.environ.get('DISPLAY') or os.environ.get('WAYLAND_DISPLAY'))
    return True


def build_dataset(config, split='train', preset='demo', data_root=None, full_data=False,
                  cfg_options=None):
    """The dataset of ``split`` as the config builds it.

    Returns:
        tuple: ``(dataset, cfg, library)`` with ``library`` 'mmdet' or 'mmseg'.
    """
    from mmext.utils.config import check_data, ensure_embedded_data, load_config, register_library
    if split not in SPLITS:
        raise MMExtError(f"unknown split '{split}', choose from {', '.join(SPLITS)}")
    cfg = load_config(config, cfg_options, embedded=None if full_data else preset,
                      data_root=data_root)
    lib = register_library(cfg)
    key = f'{split}_dataloader'
    loader = cfg.get(key)
    if not loader or 'dataset' not in loader:
        raise MMExtError(f'{osp.basename(config)} has no {key} to browse')
    if not full_data:
        ensure_embedded_data(cfg)
    check_data(cfg, splits=(key, ))
    if lib == 'mmdet':
        from mmdet.registry import DATASETS
    else:
        from mmseg.registry import DATASETS
    return DATASETS.build(loader.dataset), cfg, lib


def build_visualizer(cfg, lib, dataset_meta):
    """The config's visualizer (mmdet's / mmseg's local visualizer), without
    storage backends: images are written straight to the output folder."""
    if lib == 'mmdet':
        from mmdet.registry import VISUALIZERS
        default = dict(type='DetLocalVisualizer')
    else:
        from mmseg.registry import VISUALIZERS
        default = dict(type='SegLocalVisualizer')
    vis_cfg = dict(cfg.get('visualizer') or default)
    vis_cfg.pop('vis_backends', None)
    vis_cfg.pop('save_dir', None)
    # Visualizers are process-wide singletons by name: a second browse in the
    # same process (another config, another library) must not get the first.
    vis_cfg['name'] = f'browse_dataset_{lib}_{next(_COUNTER)}'
    visualizer = VISUALIZERS.build(vis_cfg)
    visualizer.dataset_meta = dataset_meta
    return visualizer


def _image_of(item):
    # The packed input is (C, H, W) in the pipeline's (BGR) channel order;
    # the visualizers draw on RGB.
    img = item['inputs'].permute(1, 2, 0).numpy()
    return np.ascontiguousarray(img[..., ::-1]).astype(np.uint8)


def annotations_after_resize(dataset):
    """Whether the pipeline loads annotations after resizing the image, as
    mmdet's and mmseg's test pipelines do so that evaluation sees the
    original ground truth: the packed annotations are then in the original
    image's coordinates, not the delivered image's."""
    transforms = getattr(getattr(dataset, 'pipeline', None), 'transforms', [])
    names = [type(t).__name__ for t in transforms]
    resized = [i for i, n in enumerate(names) if 'Resize' in n]
    loads = [i for i, n in enumerate(names) if 'LoadAnnotations' in n]
    return bool(resized and loads and loads[0] > resized[0])


def _det_sample(data_sample, to_image=False):
    from mmdet.structures.bbox import BaseBoxes
    from mmdet.structures.mask import BitmapMasks, PolygonMasks
    sample = data_sample.numpy()
    gt = sample.gt_instances
    meta = sample.metainfo
    rescale = to_image and 'scale_factor' in meta
    # The visualizer wants plain arrays; the pipeline packs box and mask
    # structures (in the original image's coordinates when ``to_image``).
    if isinstance(gt.get('bboxes', None), BaseBoxes):
        if rescale:
            gt.bboxes.rescale_(meta['scale_factor'])
        gt.bboxes = gt.bboxes.tensor
    if isinstance(gt.get('masks', None), (BitmapMasks, PolygonMasks)):
        if rescale:
            gt.masks = gt.masks.resize(meta['img_shape'][:2])
        gt.masks = gt.masks.to_ndarray()
    labels = [int(v) for v in np.asarray(gt.labels).reshape(-1)] if 'labels' in gt else []
    return sample, labels


def _seg_sample(data_sample, ignore_index=255, image_shape=None):
    from mmengine.structures import PixelData
    sample = data_sample.numpy()
    if 'gt_sem_seg' not in sample:
        return sample, []
    seg = np.asarray(sample.gt_sem_seg.data)
    if image_shape is not None and seg.shape[-2:] != tuple(image_shape):
        # Loaded after the resize (test pipelines): bring the label map to
        # the delivered image, nearest-neighbour so labels stay labels.
        import cv2
        seg = cv2.resize(seg[0].astype(np.uint8), tuple(image_shape)[::-1],
                         interpolation=cv2.INTER_NEAREST)[None]
        sample.gt_sem_seg = PixelData(data=seg)
    labels = sorted(int(v) for v in np.unique(seg) if v != ignore_index)
    return sample, labels


def browse(config, split='train', output_dir=None, num=None, show=False, wait_time=2.0,
           preset='demo', data_root=None, full_data=False, cfg_options=None, progress=None):
    """Draw the ground truth of the first ``num`` images of ``split``.

    Args:
        config (str): An mmdet or mmseg config.
        split (str): 'train', 'val' or 'test'; the train split shows the
            training augmentations (random flips differ run to run unless the
            config's seed is fixed).
        output_dir (str, optional): Folder for the PNGs (``None``: not saved,
            only shown). Files are ``<index>_<image name>.png``.
        num (int, optional): Images to draw (default: all).
        show (bool): Also open a window per image for ``wait_time`` seconds.
        preset (str): Embedded preset ('demo' or 'smoke'), as for
            ``tools/train.py --embedded``.
        data_root (str, optional): Embedded data folder.
        full_data (bool): Keep the config's dataset instead of the embedded one.
        cfg_options (dict, optional): ``--cfg-options`` overrides.
        progress (callable, optional): Called with each :class:`BrowsedImage`.

    Returns:
        list[BrowsedImage]
    """
    if num is not None and num < 1:
        raise MMExtError(f'--num must be at least 1, got {num}')
    if output_dir is None and not show:
        raise MMExtError('nothing to do: give an output folder or show the images')
    dataset, cfg, lib = build_dataset(config, split, preset, data_root, full_data, cfg_options)
    if len(dataset) == 0:
        raise MMExtError(f'the {split} split of {osp.basename(config)} has no images')
    visualizer = build_visualizer(cfg, lib, dataset.metainfo)
    ignore_index = getattr(dataset, 'ignore_index', 255)
    rescale = annotations_after_resize(dataset)
    if output_dir:
        os.makedirs(output_dir, exist_ok=True)
    total = len(dataset) if num is None else min(num, len(dataset))
    width = len(str(len(dataset) - 1))
    results = []
    for index in range(total):
        item = dataset[index]
        data_sample = item['data_samples']
        img_path = data_sample.metainfo.get('img_path', '')
        image = _image_of(item)
        if lib == 'mmdet':
            sample, labels = _det_sample(data_sample, to_image=rescale)
        else:
            sample, labels = _seg_sample(data_sample, ignore_index, image.shape[:2])
        stem = osp.splitext(osp.basename(img_path))[0] or 'image'
        out_file = (osp.join(output_dir, f'{index:0{width}d}_{stem}.png')
                    if output_dir else None)
        visualizer.add_datasample(osp.basename(img_path) or str(index), image, sample,
                                  draw_gt=True, draw_pred=False, show=show,
                                  wait_time=wait_time, out_file=out_file)
        record = BrowsedImage(index, img_path, out_file, tuple(image.shape[:2]), labels, lib)
        results.append(record)
        if progress is not None:
            progress(record)
    return results


def default_output_dir(config, split, root=''):
    """``work_dirs/browse_dataset/<config name>/<split>``."""
    name = osp.splitext(osp.basename(config))[0]
    return osp.join(root, 'work_dirs', 'browse_dataset', name, split)


__all__ = ['SPLITS', 'BrowsedImage', 'annotations_after_resize', 'build_dataset',
           'build_visualizer', 'browse', 'default_output_dir', 'display_available']
