"""Dataset browsing (mmext.analysis.browse_dataset and its tool): the ground
truth is drawn where it is, on the image as the pipeline delivers it."""
import os.path as osp
import random

import cv2
import numpy as np
import pytest
from conftest import PIPELINES, run_tool

from mmext.analysis.browse_dataset import (annotations_after_resize, browse, build_dataset,
                                           build_visualizer)
from mmext.utils.errors import MMExtError

TOOL = 'tools/analysis_tools/browse_dataset.py'


def _pipeline_image(dataset, index):
    # The undrawn picture, in the BGR order cv2 reads the PNG back in.
    return dataset[index]['inputs'].permute(1, 2, 0).numpy().astype(np.uint8)


def _changed(png, plain):
    return np.abs(png.astype(int) - plain.astype(int)).max(axis=2) > 24


def _browse(name, split, tmp_path, root, num=2):
    out = tmp_path / name / split
    records = browse(PIPELINES[name], split, str(out), num=num, preset='smoke', data_root=root)
    dataset, _, _ = build_dataset(PIPELINES[name], split, preset='smoke', data_root=root)
    return records, dataset, out


def test_detection_boxes_are_drawn_on_the_boxes(tmp_path, embedded_root):
    records, dataset, out = _browse('retinanet', 'val', tmp_path, embedded_root)
    # mmdet's test pipeline loads boxes after the resize, in the original
    # image's coordinates: they must be drawn scaled to the delivered image.
    assert annotations_after_resize(dataset)
    assert [r.index for r in records] == [0, 1]
    assert sorted(p.name for p in out.iterdir()) == sorted(osp.basename(r.out_file)
                                                           for r in records)
    for record in records:
        item = dataset[record.index]
        gt = item['data_samples'].gt_instances
        assert record.library == 'mmdet'
        assert record.labels == gt.labels.tolist() and record.labels
        png = cv2.imread(record.out_file)
        plain = _pipeline_image(dataset, record.index)
        # The test pipeline resizes to the smoke scale; the PNG is that image.
        assert png.shape[:2] == plain.shape[:2] == record.shape
        assert max(record.shape) <= 160 and min(record.shape) <= 128
        changed = _changed(png, plain)
        sx, sy = item['data_samples'].metainfo['scale_factor']
        assert (sx, sy) != (1, 1)
        boxes = (gt.bboxes.tensor.numpy() * [sx, sy, sx, sy]).round().astype(int)
        h, w = record.shape
        for x1, y1, x2, y2 in boxes:
            x1, y1 = max(x1, 0), max(y1, 0)
            x2, y2 = min(x2, w - 1), min(y2, h - 1)
            # The outline: most of the box's left and bottom edges are drawn
            # (the top one carries the label).
            for edge in (changed[y1:y2 + 1, max(x1 - 1, 0):x1 + 2].any(1),
                         changed[max(y2 - 1, 0):y2 + 2, x1:x2 + 1].any(0)):
                assert edge.mean() > 0.8, (record.img_path, (x1, y1, x2, y2))
        # Away from every box and its label nothing changes.
        near = np.zeros_like(changed)
        for x1, y1, x2, y2 in boxes:
            near[max(y1 - 20, 0):y2 + 4, max(x1 - 4, 0):x2 + 60] = True
        assert not changed[~near].any()


def test_instance_masks_are_filled(tmp_path, embedded_root):
    records, dataset, _ = _browse('mask-rcnn', 'val', tmp_path, embedded_root, num=2)
    checked = 0
    for record in records:
        sample = dataset[record.index]['data_samples']
        masks = sample.gt_instances.masks.resize(sample.metainfo['img_shape']).to_ndarray()
        masks = masks.astype(bool)
        assert len(masks) == len(record.labels) > 0
        changed = _changed(cv2.imread(record.out_file), _pipeline_image(dataset, record.index))
        kernel = np.ones((3, 3), np.uint8)
        for mask in masks:
            # The mask's inside (off its drawn outline) is painted over.
            inner = cv2.erode(mask.astype(np.uint8), kernel).astype(bool)
            if inner.sum() >= 30:
                assert changed[inner].mean() > 0.9
                checked += 1
        # ... and the picture is not painted everywhere.
        assert changed[~masks.any(0)].mean() < 0.3
    assert checked >= 2


def test_segmentation_label_map_is_drawn_where_labelled(tmp_path, embedded_root):
    records, dataset, _ = _browse('upernet', 'val', tmp_path, embedded_root)
    palette = np.array(dataset.metainfo['palette'], float)
    for record in records:
        item = dataset[record.index]
        seg = item['data_samples'].gt_sem_seg.data[0].numpy().astype(np.uint8)
        assert record.library == 'mmseg'
        # Loaded after the resize: drawn resized to the delivered image.
        assert annotations_after_resize(dataset)
        h, w = item['inputs'].shape[1:]
        assert seg.shape != (h, w)
        seg = cv2.resize(seg, (w, h), interpolation=cv2.INTER_NEAREST)
        assert record.labels == sorted(int(v) for v in np.unique(seg) if v != 255)
        png = cv2.imread(record.out_file)
        assert png.shape[:2] == (h, w) == record.shape
        _assert_label_blend(png, _pipeline_image(dataset, record.index), seg, palette)


def _assert_label_blend(png, plain, seg, palette, alpha=0.8):
    # SegLocalVisualizer (default alpha 0.8): image * (1 - alpha) +
    # palette[label] * alpha, darkened where unlabelled; only the class-name
    # boxes differ.
    colour = np.zeros(plain.shape, float)
    valid = seg < len(palette)
    colour[valid] = palette[seg[valid]][:, ::-1]  # RGB palette, BGR PNG
    expected = (plain.astype(float) * (1 - alpha) + colour * alpha).astype(np.uint8)
    same = np.abs(png.astype(int) - expected).max(axis=2) <= 1
    assert same.mean() > 0.85
    assert same[valid].mean() > 0.85


def _seed(seed=0):
    # mmcv's and mmseg's random transforms draw from numpy's and Python's
    # global generators.
    random.seed(seed)
    np.random.seed(seed)


def test_train_split_shows_the_training_pipeline(tmp_path, embedded_root):
    config = PIPELINES['upernet']
    _seed()
    (record, ) = browse(config, 'train', str(tmp_path), num=1, preset='smoke',
                        data_root=embedded_root)
    dataset, _, _ = build_dataset(config, 'train', preset='smoke', data_root=embedded_root)
    assert not annotations_after_resize(dataset)
    _seed()
    item = dataset[0]
    seg = item['data_samples'].gt_sem_seg.data[0].numpy().astype(np.uint8)
    # The random resize and crop (at most the smoke crop size) as drawn.
    assert record.shape == seg.shape and max(seg.shape) <= 96
    plain = item['inputs'].permute(1, 2, 0).numpy().astype(np.uint8)
    _assert_label_blend(cv2.imread(record.out_file), plain, seg,
                        np.array(dataset.metainfo['palette'], float))


def test_visualizers_of_both_libraries_in_one_process(embedded_root):
    det, det_cfg, det_lib = build_dataset(PIPELINES['retinanet'], 'val', 'smoke', embedded_root)
    seg, seg_cfg, seg_lib = build_dataset(PIPELINES['upernet'], 'val', 'smoke', embedded_root)
    a = build_visualizer(det_cfg, det_lib, det.metainfo)
    b = build_visualizer(seg_cfg, seg_lib, seg.metainfo)
    assert type(a).__name__ == 'DetLocalVisualizer'
    assert type(b).__name__ == 'SegLocalVisualizer'
    assert a.dataset_meta['classes'] == det.metainfo['classes']
    assert b.dataset_meta['classes'] == seg.metainfo['classes']


def test_bad_arguments_are_clear_errors(tmp_path, embedded_root):
    with pytest.raises(MMExtError, match="unknown split 'holdout'"):
        build_dataset(PIPELINES['retinanet'], 'holdout', 'smoke', embedded_root)
    with pytest.raises(MMExtError, match='--num must be at least 1'):
        browse(PIPELINES['retinanet'], 'val', str(tmp_path), num=0, preset='smoke',
               data_root=embedded_root)
    with pytest.raises(MMExtError, match='data root .* does not exist'):
        browse(PIPELINES['retinanet'], 'val', str(tmp_path), num=1, full_data=True)


def test_tool_writes_the_images(tmp_path, embedded_root):
    out = tmp_path / 'tool'
    proc = run_tool(TOOL, PIPELINES['mask-rcnn'], '--split', 'val', '--num', '3', '--preset',
                    'smoke', '--data-root', embedded_root, '--output-dir', str(out),
                    '--show')
    assert proc.returncode == 0, proc.stderr[-3000:]
    files = sorted(out.iterdir())
    assert len(files) == 3 and all(cv2.imread(str(f)) is not None for f in files)
    assert 'note: no display' in proc.stdout
    assert '3 val images (embedded data, smoke preset) drawn to' in proc.stdout
    assert proc.stdout.count(' objects\n') == 3

    proc = run_tool(TOOL, PIPELINES['retinanet'], '--num', '0', '--preset', 'smoke',
                    '--data-root', embedded_root, '--output-dir', str(tmp_path / 'none'))
    assert proc.returncode == 1
    assert 'browse_dataset: error: --num must be at least 1' in proc.stderr
