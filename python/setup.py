"""setuptools hook: record where the source tree is, so that an installed
copy of nnx_state finds the library that cargo builds there
(<repo>/target/release/libnnx_state.so). Everything else is in
pyproject.toml."""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

REPO = Path(__file__).resolve().parent.parent


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


setup(cmdclass={"build_py": BuildPy})
