"""``python -m mmext doctor`` reports a healthy stack here, and explains errors."""
import io

from conftest import run_tool

from mmext import doctor


def test_doctor_passes_on_this_stack():
    out = io.StringIO()
    assert doctor.run(out) == 0, out.getvalue()
    text = out.getvalue()
    for needle in ('torch 2.14.1', 'mmcv 2.1.0', 'mmcv compiled ops load',
                   'weights_only=True', "'mmext.<Name>' components resolve"):
        assert needle in text, text
    # Which mmext runs, and from where (here: this checkout, installed editable
    # by tools/setup_env.sh, which the install metadata says).
    import os.path as osp

    import mmext
    assert (f'mmext {mmext.__version__} from {osp.dirname(osp.abspath(mmext.__file__))} '
            '(source checkout)') in text, text


def test_install_kind_from_pep610_metadata():
    # pip's direct_url.json of `pip install -e .`, of `pip install .` / a
    # wheel file, and none at all (an install from an index).
    assert doctor._install_kind('{"dir_info": {"editable": true}, "url": "file:///src"}') \
        == 'source checkout'
    assert doctor._install_kind('{"dir_info": {}, "url": "file:///src"}') == 'installed package'
    assert doctor._install_kind('{"archive_info": {}, "url": "file:///m.whl"}') \
        == 'installed package'
    assert doctor._install_kind(None) == 'installed package'


def test_doctor_cli_and_explain():
    proc = run_tool('-m', 'mmext', 'doctor')
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert 'all checks passed' in proc.stdout
    proc = run_tool('-m', 'mmext', 'explain', "No module named 'mmcv._ext'")
    assert proc.returncode == 0 and 'setup_env.sh' in proc.stdout
