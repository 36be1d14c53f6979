"""The README's main job, at smoke size: all three pipelines through tools/demo.py."""
import json
import os.path as osp

from conftest import ROOT, run_tool


def test_demo_all_models_smoke(tmp_path, embedded_root):
    proc = run_tool(osp.join(ROOT, 'tools', 'demo.py'), '--model', 'all', '--preset', 'smoke',
                    '--data-root', embedded_root, '--work-dir', str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    expected = {'retinanet': 'bbox_mAP', 'mask-rcnn': 'segm_mAP', 'upernet': 'mIoU'}
    for name, metric in expected.items():
        summary = json.loads((tmp_path / name / 'summary.json').read_text())
        assert metric in summary['metrics'], summary
        assert summary['wall_time_s'] > 0
        assert osp.isfile(summary['curves'])
        assert f'[mmext demo] {name}:' in proc.stdout
