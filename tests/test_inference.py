"""tools/test.py --show-dir / --show / --tta and tools/image_demo.py draw the
predictions of a checkpoint trained here on the embedded data, where the
predictions are.

A checkpoint of a few iterations predicts poorly but it predicts: the checks
compare the drawn pixels with the predictions the same run returned (boxes,
masks, segmentation maps), not with the ground truth.
"""
import glob
import os.path as osp
import shutil

import mmcv
import numpy as np
import pytest
from conftest import CONFIGS, PIPELINES, ROOT, run_tool, smoke_cfg

from mmext.utils.config import build_runner, load_config
from mmext.utils.errors import MMExtError

TEST = osp.join(ROOT, 'tools', 'test.py')
DEMO = osp.join(ROOT, 'tools', 'image_demo.py')
# UperNet's 512-channel decoder at the 12 TTA passes dominates the run time;
# the checkpoint and every tool below use a narrow one.
NARROW_UPERNET = {'model.decode_head.channels': 64, 'model.auxiliary_head.channels': 32}
# A pixel counts as drawn on when a channel moved by more than this (JPEG
# re-encoding of an untouched pixel moves it by a few levels).
DRAWN = 40


@pytest.fixture(scope='module')
def checkpoints(tmp_path_factory, embedded_root):
    """One checkpoint per pipeline, trained for one smoke iteration (the tools
    need a checkpoint with the embedded classes, not a good one)."""
    out = {}
    for name in ('retinanet', 'mask-rcnn', 'upernet'):
        work = tmp_path_factory.mktemp(f'ckpt-{name}')
        cfg = smoke_cfg(name, embedded_root, work, **{
            'train_cfg.max_iters': 1, 'default_hooks.checkpoint.interval': 1},
                        **(NARROW_UPERNET if name == 'upernet' else {}))
        cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
        build_runner(cfg).train()
        out[name] = str(work / 'iter_1.pth')
        assert osp.isfile(out[name])
    yield out
    for path in out.values():
        shutil.rmtree(osp.dirname(path), ignore_errors=True)


def _changed(drawn, original):
    return np.abs(drawn.astype(np.int32) - original.astype(np.int32)).max(-1) > DRAWN


def _box_regions(shape, boxes, margin=6, text=(26, 230)):
    """(near, ring): pixels within ``margin`` of a box or in the label band
    mmdet writes from its top-left corner (which may run past a small box),
    and the band around each box outline."""
    h, w = shape
    near = np.zeros((h, w), bool)
    rings = []
    for x1, y1, x2, y2 in np.asarray(boxes, dtype=float):
        x1, y1 = int(np.floor(x1)), int(np.floor(y1))
        x2, y2 = int(np.ceil(x2)), int(np.ceil(y2))
        near[max(0, y1 - margin):y2 + margin, max(0, x1 - margin):x2 + margin] = True
        near[max(0, y1 - margin):y1 + text[0], max(0, x1 - margin):x1 + text[1]] = True
        ring = np.zeros((h, w), bool)
        ring[max(0, y1 - 3):max(0, y2 + 3), max(0, x1 - 3):max(0, x2 + 3)] = True
        ring[max(0, y1 + 3):max(0, y2 - 3), max(0, x1 + 3):max(0, x2 - 3)] = False
        rings.append(ring)
    return near, rings


def _assert_drawn_at_boxes(drawn, original, boxes, masks=()):
    """Every box outline (and every predicted mask) is drawn on, and nothing
    away from the boxes and their labels is."""
    assert drawn.shape == original.shape
    changed = _changed(drawn, original)
    near, rings = _box_regions(original.shape[:2], boxes)
    stray = changed & ~near
    assert stray.mean() < 0.002, f'{stray.sum()} drawn pixels away from every box'
    for ring in rings:
        if ring.any():
            assert changed[ring].mean() > 0.3, 'a predicted box is not drawn'
    for mask in masks:
        if mask.sum() > 50:
            assert changed[mask.astype(bool)].mean() > 0.5, 'a predicted mask is not drawn'
    return changed


def test_show_dir_draws_the_detections(checkpoints, embedded_root, tmp_path):
    """mmdet's visualization hook draws ground truth (left) and prediction
    (right); three detections per image, all drawn (score threshold 0)."""
    show, preds = tmp_path / 'show', tmp_path / 'preds.pkl'
    proc = run_tool(TEST, PIPELINES['retinanet'], checkpoints['retinanet'], '--embedded', 'smoke',
                    '--data-root', embedded_root, '--work-dir', str(tmp_path / 'work'),
                    '--show-dir', str(show), '--out', str(preds), '--cfg-options',
                    'test_dataloader.dataset.indices=2', 'model.test_cfg.max_per_img=3',
                    'default_hooks.visualization.score_thr=0')
    assert proc.returncode == 0, proc.stderr[-3000:]
    import mmengine
    results = mmengine.load(str(preds))
    assert len(results) == 2
    for res in results:
        original = mmcv.imread(res['img_path'], channel_order='rgb')
        drawn = mmcv.imread(str(show / osp.basename(res['img_path'])), channel_order='rgb')
        h, w = original.shape[:2]
        assert drawn.shape == (h, 2 * w, 3)
        boxes = res['pred_instances']['bboxes'].numpy()
        assert len(boxes) == 3
        _assert_drawn_at_boxes(drawn[:, w:], original, boxes)


def _ade_palette(cfg):
    from mmseg.registry import DATASETS
    dataset = cfg.test_dataloader.dataset.copy()
    dataset['lazy_init'] = True
    return np.array(DATASETS.build(dataset).metainfo['palette'])


def _assert_seg_colours(drawn, original, pred, palette, alpha=0.8, tol=3, min_fraction=0.9):
    """The drawn map is the image blended with the palette colour of the
    predicted class at each pixel (class-name labels cover a few pixels)."""
    def match(colours):
        expected = original * (1 - alpha) + colours * alpha
        return (np.abs(drawn.astype(float) - expected).max(-1) <= tol).mean()

    assert match(palette[pred]) > min_fraction, f'only {match(palette[pred]):.2f} match'
    # the colours of other classes do not: the check tells classes apart
    assert match(palette[(pred + 1) % len(palette)]) < 0.5


def test_show_dir_and_tta_draw_the_segmentation(checkpoints, embedded_root, tmp_path):
    """mmseg's hook with the ADE20K config's flip / multi-scale TTA: each drawn
    pixel has the palette colour of the class the TTA model predicted there."""
    show, out = tmp_path / 'show', tmp_path / 'pred'
    proc = run_tool(TEST, PIPELINES['upernet'], checkpoints['upernet'], '--embedded', 'smoke',
                    '--data-root', embedded_root, '--work-dir', str(tmp_path / 'work'),
                    '--show-dir', str(show), '--out', str(out), '--tta', '--cfg-options',
                    'test_dataloader.dataset.indices=2',
                    *(f'{k}={v}' for k, v in NARROW_UPERNET.items()))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'mIoU' in proc.stdout + proc.stderr
    cfg = load_config(PIPELINES['upernet'], embedded='smoke', data_root=embedded_root)
    palette = _ade_palette(cfg)
    pngs = sorted(out.glob('*.png'))
    assert len(pngs) == 2
    image_dir = osp.join(cfg.test_dataloader.dataset.data_root,
                         cfg.test_dataloader.dataset.data_prefix.img_path)
    for png in pngs:
        # --out writes ADE20K's 1-based labels (reduce_zero_label)
        pred = mmcv.imread(str(png), flag='unchanged').astype(np.int64) - 1
        original = mmcv.imread(osp.join(image_dir, png.stem + '.jpg'), channel_order='rgb')
        (drawn_file, ) = glob.glob(str(show / 'vis_data' / 'vis_image' / f'test_{png.stem}*.png'))
        drawn = mmcv.imread(drawn_file, channel_order='rgb')
        w = original.shape[1]
        assert drawn.shape == (original.shape[0], 2 * w, 3)  # ground truth | prediction
        _assert_seg_colours(drawn[:, w:], original, pred, palette)


def test_tta_needs_the_configs_tta_pipeline():
    from mmext.tools.test import set_tta
    with pytest.raises(MMExtError, match='^--tta needs tta_model and tta_pipeline'):
        set_tta(load_config(PIPELINES['mask-rcnn']))
    # mmdet's RetinaNet TTA scales are 1, 0.5 and 1.5 x its test scale;
    # --embedded keeps the ratios at the embedded scale.
    cfg = set_tta(load_config(osp.join(CONFIGS, 'resnet', 'retinanet_r50_fpn_1x_coco.py'),
                              embedded='smoke'))
    assert cfg.model.type == 'DetTTAModel' and cfg.model.module.type == 'RetinaNet'
    (tta, ) = [t for t in cfg.test_dataloader.dataset.pipeline if t['type'] == 'TestTimeAug']
    assert [t['scale'] for t in tta.transforms[0]] == [(160, 128), (80, 64), (240, 192)]


def test_show_without_a_display_is_a_one_line_error(monkeypatch):
    from mmext.tools import test as test_tool
    monkeypatch.setattr(test_tool, 'has_display', lambda: False)
    cfg = load_config(PIPELINES['retinanet'])
    with pytest.raises(MMExtError, match=r'^--show needs a display .* --show-dir DIR instead$'):
        test_tool.set_visualization(cfg, 'mmdet', show=True)
    monkeypatch.delenv('DISPLAY', raising=False)
    monkeypatch.delenv('WAYLAND_DISPLAY', raising=False)
    import sys
    if sys.platform.startswith('linux'):
        assert not test_tool.has_display()


def _coco_val_images(root, n=2):
    return sorted(glob.glob(osp.join(root, 'coco', 'val2017', '*.jpg')))[:n]


def test_image_demo_cli_draws_boxes(checkpoints, embedded_root, tmp_path):
    """tools/image_demo.py over mmdet's DetInferencer: the drawings and the
    predictions (JSON) are written, boxes at or above --score-thr are drawn."""
    import json
    images = _coco_val_images(embedded_root)
    thr = 0.0
    proc = run_tool(DEMO, *images, PIPELINES['retinanet'], checkpoints['retinanet'],
                    '--embedded', 'smoke', '--out-dir', str(tmp_path), '--score-thr', str(thr),
                    '--device', 'cpu', '--cfg-options', 'model.test_cfg.max_per_img=3')
    assert proc.returncode == 0, proc.stderr[-3000:]
    for image in images:
        name = osp.basename(image)
        pred = json.loads((tmp_path / 'preds' / (osp.splitext(name)[0] + '.json')).read_text())
        boxes = [b for b, s in zip(pred['bboxes'], pred['scores']) if s >= thr]
        assert len(boxes) == 3
        _assert_drawn_at_boxes(mmcv.imread(str(tmp_path / 'vis' / name), channel_order='rgb'),
                               mmcv.imread(image, channel_order='rgb'), boxes)


def test_image_demo_draws_masks_with_the_trained_classes(checkpoints, embedded_root, tmp_path):
    from pycocotools import mask as mask_utils

    from mmext.tools.image_demo import build_inferencer, run
    inferencer, lib = build_inferencer(PIPELINES['mask-rcnn'], checkpoints['mask-rcnn'], 'cpu',
                                       'smoke', {'model.test_cfg.rcnn.max_per_img': 2})
    assert lib == 'mmdet'
    # class names from the checkpoint's dataset_meta (embedded), not COCO's 80
    assert inferencer.visualizer.dataset_meta['classes'] == (
        'airplane', 'boat', 'traffic light', 'bottle', 'book', 'clock')
    (image, ) = _coco_val_images(embedded_root, 1)
    pred = run([image], inferencer, lib, str(tmp_path), score_thr=0.0)['predictions'][0]
    masks = [mask_utils.decode(m) for m in pred['masks']]
    assert len(masks) == len(pred['bboxes']) == 2
    _assert_drawn_at_boxes(
        mmcv.imread(str(tmp_path / 'vis' / osp.basename(image)), channel_order='rgb'),
        mmcv.imread(image, channel_order='rgb'), pred['bboxes'], masks)


def test_image_demo_draws_the_segmentation(checkpoints, embedded_root, tmp_path):
    from mmext.tools.image_demo import build_inferencer, run
    inferencer, lib = build_inferencer(PIPELINES['upernet'], checkpoints['upernet'], 'cpu',
                                       'smoke', NARROW_UPERNET)
    assert lib == 'mmseg'
    (image, ) = sorted(glob.glob(osp.join(embedded_root, 'ade', 'ADEChallengeData2016', 'images',
                                          'validation', '*.jpg')))[:1]
    (pred, ) = run([image], inferencer, lib, str(tmp_path), opacity=0.5)['predictions']
    assert len(list((tmp_path / 'pred').glob('*.png'))) == 1
    palette = np.array(inferencer.model.dataset_meta['palette'])
    assert len(palette) == 10  # the embedded classes, from the checkpoint
    # the drawing is a JPEG: compare with a tolerance that a wrong colour exceeds
    _assert_seg_colours(
        mmcv.imread(str(tmp_path / 'vis' / osp.basename(image)), channel_order='rgb'),
        mmcv.imread(image, channel_order='rgb'), pred, palette, alpha=0.5, tol=24,
        min_fraction=0.8)


def test_image_demo_refuses_a_checkpoint_of_another_model(checkpoints):
    from mmext.tools.image_demo import build_inferencer
    with pytest.raises(MMExtError, match='^checkpoint .* does not match the model'):
        build_inferencer(PIPELINES['retinanet'], checkpoints['upernet'], 'cpu', 'smoke')
