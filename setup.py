"""Build hook that ships ``configs/`` and ``tools/`` inside the package.

Metadata lives in setup.cfg. OpenMMLab packages keep their configs and tools
in ``<package>/.mim/`` (mmdet's and mmseg's ``add_mim_extension``): that is where
mmengine looks for ``mmdet::`` bases and where ``mim`` finds a package's tools.
mmext follows it so that an installed mmext answers ``mmext::`` bases and
``--embedded`` without a checkout:

* a wheel (``pip install .``, ``pip wheel .``) gets copies in ``mmext/.mim/``;
* an editable install gets symlinks ``mmext/.mim/{configs,tools}`` to the
  checkout's folders (git-ignored), so edits to a config take effect at once.
"""
import os
import os.path as osp
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = osp.dirname(osp.abspath(__file__))
MIM_FOLDERS = ('configs', 'tools')


class BuildPyWithMim(build_py):

    def run(self):
        super().run()
        if getattr(self, 'editable_mode', False):
            self._link(osp.join(ROOT, 'mmext', '.mim'))
        else:
            self._copy(osp.join(self.build_lib, 'mmext', '.mim'))

    @staticmethod
    def _link(mim):
        os.makedirs(mim, exist_ok=True)
        for name in MIM_FOLDERS:
            dst = osp.join(mim, name)
            if osp.islink(dst) or not osp.exists(dst):
                if osp.islink(dst):
                    os.remove(dst)
                # Relative, so the checkout can move.
                os.symlink(osp.join('..', '..', name), dst)

    @staticmethod
    def _copy(mim):
        for name in MIM_FOLDERS:
            src = osp.join(ROOT, name)
            if not osp.isdir(src):
                # An sdist without them would build a wheel that cannot
                # resolve mmext:: bases; MANIFEST.in includes both.
                raise RuntimeError(f'{src} is missing: build mmext from a checkout or an sdist')
            dst = osp.join(mim, name)
            if osp.lexists(dst):
                shutil.rmtree(dst) if not osp.islink(dst) else os.remove(dst)
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))


setup(cmdclass={'build_py': BuildPyWithMim})
