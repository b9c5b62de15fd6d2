"""setuptools hooks. Everything else is in pyproject.toml.

- When the package is built inside the nnx-state source tree, record where
  that tree is, so that an installed copy of nnx_state finds the library
  that cargo builds there (<repo>/target/release/libnnx_state.so).
- When a copy of the native library sits in the package directory
  (nnx_state/libnnx_state.so, put there by build_wheel.sh), the wheel carries
  it and is a platform wheel: tagged py3-none-<platform> (the library does
  not depend on the Python version or ABI), not py3-none-any.
"""

import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

if sys.platform == "darwin":
    LIB_NAMES = ("libnnx_state.dylib",)
elif sys.platform == "win32":
    LIB_NAMES = ("nnx_state.dll",)
else:
    LIB_NAMES = ("libnnx_state.so",)


class BuildPy(build_py):
    def run(self):
        super().run()
        if (REPO / "Cargo.toml").is_file():
            target = Path(self.build_lib) / "nnx_state" / "_build_config.py"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(
                '"""Written by setup.py when the package was built."""\n'
                f"SOURCE_ROOT = {str(REPO)!r}\n"
            )


cmdclass = {"build_py": BuildPy}
distclass = Distribution

if any((HERE / "nnx_state" / name).is_file() for name in LIB_NAMES):
    try:
        from setuptools.command.bdist_wheel import bdist_wheel  # setuptools >= 70.1
    except ImportError:
        from wheel.bdist_wheel import bdist_wheel  # older setuptools bring `wheel`

    class BinaryDistribution(Distribution):
        """Says it has extension modules, so that the files go to platlib
        and the wheel is not pure."""

        def has_ext_modules(self):
            return True

    class PlatformWheel(bdist_wheel):
        def get_tag(self):
            _, _, platform = super().get_tag()
            return "py3", "none", platform

    cmdclass["bdist_wheel"] = PlatformWheel
    distclass = BinaryDistribution

setup(cmdclass=cmdclass, distclass=distclass)
