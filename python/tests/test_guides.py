"""The guides (docs/guide-c.md, guide-cpp.md, guide-python.md) are tested
as written: every fenced code block of a guide is run or checked.

- The blocks in the guide's language (``c``, ``cpp``, ``python``), put
  together in order, are one program, saved under the file name that the
  guide's ``sh`` block uses.
- The ``sh`` block, the guide's build and run commands, runs with bash in a
  scratch directory laid out as the repository (``include/``, ``python/``,
  and ``target/release/`` holding the library these tests load), with
  ``python3`` being this interpreter.
- Each ``text`` block is output that the program must print, verbatim.
- The C and C++ guides stay in step with their seed examples
  (examples-c/seed_example.c, examples-cpp/seed_example.cpp): built with
  the guide's own command, the seed example must print each listing the
  guide shows (the ``text`` blocks that begin with ``== ``).

Any other kind of block fails the test: nothing in a guide goes untested.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import nnx_state

MarkdownIt = pytest.importorskip("markdown_it").MarkdownIt

REPO = Path(__file__).resolve().parent.parent.parent
DOCS = REPO / "docs"
GUIDES = {"guide-c.md": "c", "guide-cpp.md": "cpp", "guide-python.md": "python"}
COMPILERS = {"c": "cc", "cpp": "c++"}
SEED_EXAMPLES = {"c": REPO / "examples-c" / "seed_example.c",
                 "cpp": REPO / "examples-cpp" / "seed_example.cpp"}

def code_blocks(text: str) -> list[tuple[str, str]]:
    """The code blocks of a Markdown text, as markdown-it (the site's
    renderer) finds them: (language, code), in order; an indented block
    has the language ``"indented"``."""
    tokens = MarkdownIt("commonmark").parse(text)
    return [
        (t.info.split()[0] if t.info.strip() else "", t.content) if t.type == "fence"
        else ("indented", t.content)
        for t in tokens if t.type in ("fence", "code_block")
    ]


def test_code_blocks_are_found():
    text = "a\n```c\nint x;\n```\nb\n\n    indented\n\n~~~text\nout\n~~~\n"
    assert code_blocks(text) == [("c", "int x;\n"), ("indented", "indented\n"), ("text", "out\n")]


def scratch_repo(tmp_path: Path) -> Path:
    """A directory laid out as the repository, for the guides' commands."""
    lib_dir = Path(nnx_state.library_path).resolve().parent
    (tmp_path / "target").mkdir()
    (tmp_path / "target" / "release").symlink_to(lib_dir)
    (tmp_path / "include").symlink_to(REPO / "include")
    (tmp_path / "python").symlink_to(REPO / "python")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "python3"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    wrapper.chmod(0o755)
    return tmp_path


@pytest.mark.parametrize("guide", sorted(GUIDES))
def test_guide_runs_as_written(guide, tmp_path):
    language = GUIDES[guide]
    blocks = code_blocks((DOCS / guide).read_text(encoding="utf-8"))
    others = sorted({lang for lang, _ in blocks} - {language, "sh", "text"})
    assert not others, f"{guide}: code blocks no test runs: {others}"
    program = "".join(code for lang, code in blocks if lang == language)
    commands = [code for lang, code in blocks if lang == "sh"]
    outputs = [code for lang, code in blocks if lang == "text"]
    assert program and len(commands) == 1 and outputs, f"{guide}: a program, one sh block, output"

    if language in COMPILERS:
        if shutil.which(COMPILERS[language]) is None:
            pytest.skip(f"no {COMPILERS[language]} to build {guide}")
        lib_dir = Path(nnx_state.library_path).resolve().parent
        if not (lib_dir / "libnnx_state.a").is_file():
            pytest.skip(f"no libnnx_state.a beside {nnx_state.library_path}")

    root = scratch_repo(tmp_path)
    names = re.findall(rf"[\w./-]+\.{language if language != 'python' else 'py'}\b", commands[0])
    assert names, f"{guide}: the sh block names no .{language} file"
    (root / names[0]).write_text(program, encoding="utf-8")
    env = dict(os.environ, PATH=f"{root / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}")
    env.pop("NNX_STATE_LIB", None)  # the guide's command says where the library is, or needs not
    if language == "python":
        env.pop("PYTHONPATH", None)
    stdout = run_commands(guide, commands[0], root, env)
    for output in outputs:
        assert output in stdout, f"{guide}: the program did not print\n{output}\nbut\n{stdout}"
    assert stdout.rstrip().endswith("seed: OK"), stdout

    if language in SEED_EXAMPLES:
        seed = SEED_EXAMPLES[language]
        shutil.copyfile(seed, root / names[0])
        seed_stdout = run_commands(seed.name, commands[0], root, env)
        for output in outputs:
            if output.startswith("== "):
                assert output in seed_stdout, f"{seed.name} does not print what {guide} shows:\n{output}"


def run_commands(what: str, commands: str, root: Path, env: dict) -> str:
    """Runs a guide's sh block in ``root``; gives its standard output."""
    run = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", commands], cwd=root, env=env,
        capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, f"{what}:\n$ {commands}\n{run.stdout}\n{run.stderr}"
    return run.stdout
