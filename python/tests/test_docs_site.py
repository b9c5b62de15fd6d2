"""The documentation tools: scripts/check_links.py (the link checker that
`make docs` and `make test` run) on small made-up sites and Markdown files,
and the header parsing of scripts/build_site.py on the real headers."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent
SCRIPTS = REPO / "scripts"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


check_links = load("check_links")


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


GOOD_SITE = {
    "index.html": (
        '<a href="docs/page.html#usage">usage</a> <a href="docs/">docs</a> '
        '<a href="#top">top</a> <img src="img/logo.png"> <h1 id="top">x</h1> '
        '<a href="https://example.org/x">out</a> <a href="mailto:a@b.c">mail</a>'
    ),
    "docs/index.html": '<a href="../index.html">up</a>',
    "docs/page.html": (
        '<h2 id="usage">Usage</h2> <h2 id="impl-From%3CT%3E">escaped id</h2> '
        '<a name="old"></a> <a href="#impl-From%3CT%3E">raw</a> <a href="../index.html#top">t</a> '
        '<a href="#old">named anchor</a>'
    ),
    "img/logo.png": "not really a png",
}


def test_a_good_site_passes(tmp_path):
    problems, external = check_links.check_site(write(tmp_path, GOOD_SITE))
    assert problems == []
    assert external == {"https://example.org/x"}


def test_a_broken_link_and_a_broken_anchor_are_found(tmp_path):
    site = write(tmp_path, {
        **GOOD_SITE,
        "docs/broken.html": (
            '<a href="missing.html">gone</a>\n'
            '<a href="page.html#nowhere">bad anchor</a>\n'
            '<link href="../../outside.css">\n'
            '<a href="page.html#usage">fine</a>'
        ),
    })
    problems, _ = check_links.check_site(site)
    assert len(problems) == 3, problems
    assert problems[0].startswith("docs/broken.html:1: missing.html: no such file")
    assert problems[1].startswith("docs/broken.html:2: page.html#nowhere: no id 'nowhere'")
    assert problems[2].startswith("docs/broken.html:3: ../../outside.css: points outside the site")
    assert check_links.main(["--site", str(site)]) == 1
    (site / "docs" / "broken.html").unlink()
    assert check_links.main(["--site", str(site)]) == 0


def test_rustdoc_line_ranges_need_their_first_line(tmp_path):
    site = write(tmp_path, {
        "src.html": '<a href="#1" id="1">1</a><a href="#2" id="2">2</a>',
        "item.html": '<a href="src.html#1-2">source</a> <a href="src.html#3-9">past the end</a>',
    })
    problems, _ = check_links.check_site(site)
    assert len(problems) == 1 and "src.html#3-9" in problems[0], problems


def test_heading_slugs_are_githubs():
    assert check_links.heading_slug("Filters from text and the nnx-state tool") == (
        "filters-from-text-and-the-nnx-state-tool"
    )
    assert check_links.heading_slug("C++") == "c"
    assert check_links.heading_slug("What `make test` needs, downloads and installs") == (
        "what-make-test-needs-downloads-and-installs"
    )
    assert check_links.unique_slugs(["Usage", "Usage", "usage"]) == ["usage", "usage-1", "usage-2"]


def test_markdown_sources_stay_inside_the_repository(tmp_path):
    repo = write(tmp_path / "repo", {
        "README.md": (
            "# Title\n"
            "[good](docs/a.md#a-heading) [dir](docs) [self](#title)\n"
            "[bad anchor](docs/a.md#nope)\n"
            "[spec](../shared/SPEC.md)\n"
            "[missing](docs/missing.md)\n"
            "`[in code](nowhere.md)`\n"
            "```\n[in a fence](nowhere.md)\n```\n"
            "[ref]: docs/a.md\n"
            '<a href="/etc/passwd">absolute</a>\n'
            "[web](https://example.org)\n"
        ),
        "docs/a.md": "# A heading\n\n## A heading\n",
    })
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "SPEC.md").write_text("# Spec\n")
    problems = check_links.check_sources([repo / "README.md"], repo)
    assert problems == [
        "README.md:3: docs/a.md#nope: no heading 'nope' in docs/a.md",
        "README.md:4: ../shared/SPEC.md: points outside the repository",
        "README.md:5: docs/missing.md: no such file",
        "README.md:11: /etc/passwd: an absolute path; link relatively",
    ]


def test_the_repositorys_documents_have_no_broken_links():
    files = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    assert check_links.check_sources(files, REPO) == []


# ---------------------------------------------------------------------------
# The header reference pages
# ---------------------------------------------------------------------------

pytest.importorskip("markdown_it")  # what build_site.py renders Markdown with
build_site = load("build_site")


def test_every_c_function_and_type_has_a_documented_entry():
    text = (REPO / "include" / "nnx_state.h").read_text(encoding="utf-8")
    _, entries = build_site.parse_c_header(text)
    by_name = {e.name: e for e in entries}
    functions = re.findall(r"^(?:enum |const |void|bool|size_t|char|int|struct)[^(;]*?\b(nnx_\w+)\(", text, re.M)
    types = re.findall(r"^typedef .*?\b(nnx_\w+);$", text, re.M)
    assert len(functions) > 100 and len(types) > 10
    for name in functions + types:
        assert name in by_name, name
        assert by_name[name].doc.strip(), f"{name} has no doc comment"
    assert by_name["nnx_state_split"].kind == "function"
    assert "NNX_ERR_NON_EXHAUSTIVE" in by_name["nnx_state_split"].doc
    members = {m.name for m in by_name["nnx_status"].members}
    assert {"NNX_OK", "NNX_ERR_NON_EXHAUSTIVE", "NNX_ERR_TOO_DEEP"} <= members


def test_every_cpp_class_has_an_entry_and_detail_is_left_out():
    text = (REPO / "include" / "nnx_state.hpp").read_text(encoding="utf-8")
    _, entries = build_site.parse_cpp_header(text)
    names = {e.name for e in entries}
    public_classes = set()
    detail = False
    for line in text.split("\n"):
        if line.startswith("namespace detail"):
            detail = True
        elif line.startswith("}  // namespace detail"):
            detail = False
        m = re.match(r"(?:class|struct) (\w+) ?[:{]", line)
        if m and not detail:
            public_classes.add(m.group(1))
    assert {"State", "Filter", "Variable", "Array", "Error"} <= public_classes
    assert public_classes <= names, public_classes - names
    assert {"State::split", "State::filter", "merge", "of_type"} <= names
    assert not any(n.startswith("CPath") or n.startswith("CallerRelease") for n in names)
    assert not {"Adopt", "Variable::Adopt"} & names  # a private tag type of a class
    odd = [n for n in names if not re.fullmatch(r"(\w+::)*(~?\w+|operator\S+)", n)]
    assert not odd and not {n.split("::")[-1] for n in names} & {"const", "noexcept"}, odd


def test_markdown_links_are_rewritten_to_the_site(tmp_path):
    site = build_site.Site(tmp_path)
    guide = "docs/guide-c.md"
    assert site.site_target(guide, "semantics.md#errors") == "semantics.html#errors"
    assert site.site_target(guide, "../README.md#installing") == "../readme.html#installing"
    assert site.site_target(guide, "../include/nnx_state.h#nnx_state_split") == (
        "../api/c.html#nnx_state_split"
    )
    assert site.site_target(guide, "../python/nnx_state/__init__.py") == "../python/nnx_state.html"
    assert site.site_target(guide, "#filter") == "#filter"
    copied = site.site_target(guide, "../examples-c/seed_example.c")
    assert copied == "../files/examples-c/seed_example.c.html"
    assert "nnx_state_split" in (tmp_path / "files/examples-c/seed_example.c.html").read_text()
    with pytest.raises(SystemExit, match="outside the repository"):
        site.site_target(guide, "../../shared/SPEC.md")
    with pytest.raises(SystemExit, match="not a file of the repository"):
        site.site_target(guide, "missing.md")
