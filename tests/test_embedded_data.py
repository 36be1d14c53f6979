"""The embedded COCO / ADE20K-format data: layout, annotation consistency, scene
statistics, determinism, and loading by the stock mmdet / mmseg datasets."""
import ast
import hashlib
import importlib.util
import itertools
import json
import os
import os.path as osp

import cv2
import numpy as np
import pytest
from mmengine.registry import DefaultScope
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from mmext.datasets.embedded import (ADE_CLASSES, ADE_INDEX, CLASSES, COCO_CATEGORY_IDS, META_FILE,
                                     STUFF_CLASSES, generate)

# pycocotools' decode trips a numpy 2 deprecation on every call.
pytestmark = pytest.mark.filterwarnings('ignore:__array__ implementation:DeprecationWarning')

SMALL = dict(num_train=24, num_val=8, seed=0)
MEDIUM = dict(num_train=96, num_val=4, seed=0)
ADE = osp.join('ade', 'ADEChallengeData2016')


@pytest.fixture(scope='module')
def small(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('embedded_small'))
    return root, generate(root, **SMALL)


@pytest.fixture(scope='module')
def medium(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('embedded_medium'))
    generate(root, **MEDIUM)
    return COCO(osp.join(root, 'coco', 'annotations', 'instances_train2017.json'))


def _coco(root, split):
    return COCO(osp.join(root, 'coco', 'annotations', f'instances_{split}2017.json'))


def _ade_paths(root, split, index):
    sub, tag = ('training', 'train') if split == 'train' else ('validation', 'val')
    name = f'ADE_{tag}_{index:08d}'
    return (osp.join(root, ADE, 'images', sub, name + '.jpg'),
            osp.join(root, ADE, 'annotations', sub, name + '.png'))


def _tree_digest(root):
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = osp.join(dirpath, f)
            with open(p, 'rb') as fh:
                out[osp.relpath(p, root)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def _literal_tuple(module_path, key):
    """The literal tuple given as ``key=(...)`` or ``'key': (...)`` in a module,
    read as text: works without importing mmseg / mmdet (which need compiled mmcv)."""
    with open(module_path) as f:
        tree = ast.parse(f.read())
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == key:
            return ast.literal_eval(node.value)
        if isinstance(node, ast.Dict):
            for k, v in zip(node.keys, node.values):
                if isinstance(k, ast.Constant) and k.value == key:
                    return ast.literal_eval(v)
    raise LookupError(key)


def _package_file(pkg, *rel):
    return osp.join(osp.dirname(importlib.util.find_spec(pkg).origin), *rel)


# --------------------------------------------------------------------------- label spaces


def test_class_names_live_in_both_label_spaces():
    ade = _literal_tuple(_package_file('mmseg', 'datasets', 'ade.py'), 'classes')
    coco = _literal_tuple(_package_file('mmdet', 'datasets', 'coco.py'), 'classes')
    assert len(ade) == 150 and len(coco) == 80
    for name, index in ADE_INDEX.items():
        assert ade[index] == name
    assert set(CLASSES) <= set(coco)
    assert set(ADE_CLASSES) == set(CLASSES) | set(STUFF_CLASSES)
    assert list(ADE_CLASSES) == sorted(ADE_CLASSES, key=ADE_INDEX.get)
    assert [COCO_CATEGORY_IDS[c] for c in CLASSES] == sorted(COCO_CATEGORY_IDS.values())
    # Official COCO ids: the index in mmdet's 80-class list, counting the 11
    # unused ids (12, 26, 29, 30, 45, 66, 68, 69, 71, 83, 91) in between.
    gaps = [12, 26, 29, 30, 45, 66, 68, 69, 71, 83, 91]
    official = [i for i in range(1, 91) if i not in gaps]
    assert {c: official[coco.index(c)] for c in CLASSES} == COCO_CATEGORY_IDS


def test_class_names_match_imported_metainfo():
    from mmdet.datasets import CocoDataset
    from mmseg.datasets import ADE20KDataset
    ade = ADE20KDataset.METAINFO['classes']
    assert all(ade[i] == name for name, i in ADE_INDEX.items())
    assert set(CLASSES) <= set(CocoDataset.METAINFO['classes'])


# --------------------------------------------------------------------------- COCO layout


def test_coco_layout_and_categories(small):
    root, summary = small
    assert summary['generated'] and summary['coco_root'] == osp.join(root, 'coco')
    for split, n in (('train', SMALL['num_train']), ('val', SMALL['num_val'])):
        coco = _coco(root, split)
        assert set(coco.dataset) >= {'info', 'licenses', 'images', 'annotations', 'categories'}
        assert [(c['id'], c['name']) for c in coco.dataset['categories']] == \
            [(COCO_CATEGORY_IDS[c], c) for c in CLASSES]
        assert sorted(coco.getImgIds()) == list(range(1, n + 1))
        for img in coco.dataset['images']:
            assert img['file_name'] == f"{img['id']:012d}.jpg"
            im = cv2.imread(osp.join(root, 'coco', f'{split}2017', img['file_name']))
            assert im.shape == (img['height'], img['width'], 3)
        for ann in coco.dataset['annotations']:
            assert ann['iscrowd'] == 0
            assert all(len(p) >= 6 and len(p) % 2 == 0 for p in ann['segmentation'])


def test_box_area_and_polygons_agree(small):
    root, _ = small
    for split in ('train', 'val'):
        coco = _coco(root, split)
        for ann in coco.dataset['annotations']:
            img = coco.imgs[ann['image_id']]
            x, y, w, h = ann['bbox']
            xs = [v for p in ann['segmentation'] for v in p[0::2]]
            ys = [v for p in ann['segmentation'] for v in p[1::2]]
            assert [x, y, x + w, y + h] == [min(xs), min(ys), max(xs), max(ys)]
            assert 0 <= x and 0 <= y and x + w <= img['width'] and y + h <= img['height']
            rle = mask_utils.merge(mask_utils.frPyObjects(ann['segmentation'], img['height'],
                                                          img['width']))
            assert ann['area'] == mask_utils.area(rle)
            m = coco.annToMask(ann)
            assert m.sum() == ann['area'] > 0
            rows, cols = np.nonzero(m)
            assert cols.min() >= x - 1 and cols.max() + 1 <= x + w + 1
            assert rows.min() >= y - 1 and rows.max() + 1 <= y + h + 1


def test_scenes_are_crowded_and_varied(small):
    root, _ = small
    coco = _coco(root, 'train')
    per_image = [len(coco.getAnnIds(imgIds=i)) for i in coco.getImgIds()]
    assert min(per_image) >= 2 and np.mean(per_image) >= 3
    overlapping = 0
    for i in coco.getImgIds():
        boxes = [a['bbox'] for a in coco.loadAnns(coco.getAnnIds(imgIds=i))]
        overlapping += any(min(a[0] + a[2], b[0] + b[2]) > max(a[0], b[0])
                           and min(a[1] + a[3], b[1] + b[3]) > max(a[1], b[1])
                           for a, b in itertools.combinations(boxes, 2))
    assert overlapping >= len(per_image) // 4
    sizes = [(im['width'], im['height']) for im in coco.dataset['images']]
    assert all(w != h and 256 <= min(w, h) and max(w, h) <= 416 for w, h in sizes)
    assert any(w > h for w, h in sizes) and any(w < h for w, h in sizes)
    assert len(set(sizes)) >= len(sizes) // 2


def test_scale_range_and_class_balance(medium):
    sides = [max(a['bbox'][2:]) for a in medium.dataset['annotations']]
    assert max(sides) / min(sides) >= 4
    counts = np.bincount([a['category_id'] for a in medium.dataset['annotations']])
    counts = counts[[COCO_CATEGORY_IDS[c] for c in CLASSES]]
    assert counts.min() >= 0.5 * counts.mean(), dict(zip(CLASSES, counts))


# --------------------------------------------------------------------------- ADE20K layout


def test_ade_layout_and_labels(small):
    root, summary = small
    allowed = {0} | {ADE_INDEX[c] + 1 for c in ADE_CLASSES}
    stuff_seen = set()
    for split, n in (('train', SMALL['num_train']), ('val', SMALL['num_val'])):
        coco = _coco(root, split)
        sub = 'training' if split == 'train' else 'validation'
        assert len(os.listdir(osp.join(root, ADE, 'images', sub))) == n
        assert len(os.listdir(osp.join(root, ADE, 'annotations', sub))) == n
        for img in coco.dataset['images']:
            jpg, png = _ade_paths(root, split, img['id'])
            coco_jpg = osp.join(root, 'coco', f'{split}2017', img['file_name'])
            with open(jpg, 'rb') as a, open(coco_jpg, 'rb') as b:
                assert a.read() == b.read()      # one scene, two layouts
            sem = cv2.imread(png, cv2.IMREAD_UNCHANGED)
            assert sem.dtype == np.uint8 and sem.shape == (img['height'], img['width'])
            values = set(np.unique(sem).tolist())
            assert values <= allowed
            stuff = [c for c in STUFF_CLASSES if ADE_INDEX[c] + 1 in values]
            assert stuff and np.isin(sem, [ADE_INDEX[c] + 1 for c in STUFF_CLASSES]).mean() > 0.3
            stuff_seen.update(stuff)
            for ann in coco.loadAnns(coco.getAnnIds(imgIds=img['id'])):
                m = coco.annToMask(ann).astype(bool)
                label = ADE_INDEX[coco.cats[ann['category_id']]['name']] + 1
                assert (sem[m] == label).mean() >= 0.95
    assert stuff_seen == set(STUFF_CLASSES)


# --------------------------------------------------------------------------- determinism


def test_meta_and_idempotent_rerun(small):
    root, summary = small
    with open(osp.join(root, META_FILE)) as f:
        meta = json.load(f)
    assert meta['complete'] and meta['seed'] == 0 and meta['classes'] == list(CLASSES)
    assert meta['ade_classes'] == list(ADE_CLASSES)
    assert meta['num_train'] == SMALL['num_train'] and meta['num_val'] == SMALL['num_val']
    mtimes = {p: os.stat(osp.join(root, p)).st_mtime_ns for p in _tree_digest(root)}
    again = generate(root, **SMALL)
    assert not again['generated'] and again['num_instances'] == summary['num_instances']
    assert {p: os.stat(osp.join(root, p)).st_mtime_ns for p in mtimes} == mtimes


def test_same_seed_same_bytes_different_seed_different(small, tmp_path):
    root, _ = small
    # A second process pool run must reproduce the in-process one byte for byte.
    generate(str(tmp_path / 'same'), workers=2, **SMALL)
    assert _tree_digest(str(tmp_path / 'same')) == _tree_digest(root)
    generate(str(tmp_path / 'other'), **dict(SMALL, seed=1))
    a, b = _tree_digest(root), _tree_digest(str(tmp_path / 'other'))
    images = [p for p in a if p.endswith('.jpg')]
    assert sum(a[p] != b[p] for p in images) == len(images)


def test_changed_counts_regenerate_without_stale_files(tmp_path):
    root = str(tmp_path)
    generate(root, num_train=4, num_val=2)
    s = generate(root, num_train=2, num_val=1)
    assert s['generated']
    assert len(os.listdir(osp.join(root, ADE, 'images', 'training'))) == 2
    assert len(os.listdir(osp.join(root, 'coco', 'val2017'))) == 1


def test_refuses_foreign_data(tmp_path):
    os.makedirs(tmp_path / 'coco')
    with pytest.raises(FileExistsError):
        generate(str(tmp_path), num_train=1, num_val=1)


# --------------------------------------------------------------------------- stock datasets


def test_stock_mmdet_coco_dataset_loads(small):
    from mmdet.datasets import CocoDataset
    from mmdet.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    root, _ = small
    # Built in the library's scope, as its configs are: a scope left current by
    # an earlier test (runners and tools set one globally) must not matter.
    with DefaultScope.overwrite_default_scope('mmdet'):
        ds = CocoDataset(
            data_root=osp.join(root, 'coco'),
            ann_file='annotations/instances_train2017.json',
            data_prefix=dict(img='train2017/'),
            metainfo=dict(classes=CLASSES),
            pipeline=[dict(type='LoadImageFromFile'),
                      dict(type='LoadAnnotations', with_bbox=True, with_mask=True)])
    assert len(ds) == SMALL['num_train']
    coco = _coco(root, 'train')
    for i in (0, len(ds) - 1):
        sample = ds[i]
        h, w = sample['img'].shape[:2]
        anns = coco.loadAnns(coco.getAnnIds(imgIds=sample['img_id']))
        labels = sample['gt_bboxes_labels']
        assert [CLASSES[k] for k in labels] == [coco.cats[a['category_id']]['name'] for a in anns]
        assert sample['gt_bboxes'].tensor.shape == (len(anns), 4)
        assert (sample['gt_masks'].height, sample['gt_masks'].width) == (h, w)
        assert len(sample['gt_masks']) == len(anns)
        np.testing.assert_allclose(sample['gt_masks'].areas, [a['area'] for a in anns])


def test_stock_mmseg_ade20k_dataset_loads(small):
    from mmseg.datasets import ADE20KDataset
    from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    root, _ = small
    with DefaultScope.overwrite_default_scope('mmseg'):
        ds = ADE20KDataset(
            data_root=osp.join(root, ADE),
            data_prefix=dict(img_path='images/training', seg_map_path='annotations/training'),
            metainfo=dict(classes=ADE_CLASSES),
            reduce_zero_label=True,
            pipeline=[dict(type='LoadImageFromFile'), dict(type='LoadAnnotations')])
    assert len(ds) == SMALL['num_train']
    sample = ds[0]
    raw = cv2.imread(sample['seg_map_path'], cv2.IMREAD_UNCHANGED)
    seg = sample['gt_seg_map']
    assert seg.shape == sample['img'].shape[:2] == raw.shape
    assert set(np.unique(seg).tolist()) <= set(range(len(ADE_CLASSES))) | {255}
    # mmseg's name-based label map must send each ADE index to its place in ADE_CLASSES.
    expected = np.full_like(raw, 255)
    for k, name in enumerate(ADE_CLASSES):
        expected[raw == ADE_INDEX[name] + 1] = k
    np.testing.assert_array_equal(seg, expected)
