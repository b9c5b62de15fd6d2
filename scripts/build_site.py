#!/usr/bin/env python3
"""Builds the documentation site (what `make docs` runs, through scripts/docs.sh).

    python scripts/build_site.py --out target/doc-site [--rustdoc target/doc]

Writes one static site, plain HTML without JavaScript of its own:

- ``index.html``: links to everything below;
- ``readme.html`` and ``docs/NAME.html``: README.md and docs/*.md (the
  guides among them) rendered with markdown-it-py; relative links to other
  pages become links to their HTML, links to the headers become links to
  the reference pages, and links to other files of the repository get a
  copy of the file under ``files/``;
- ``api/c.html`` and ``api/cpp.html``: include/nnx_state.h and
  include/nnx_state.hpp, from their doc comments (``/** */`` and ``///``)
  and declarations, one anchor per function, type, constant and member;
- ``python/``: the Python package's API, rendered by pdoc from the
  docstrings (it imports the package, so ``NNX_STATE_LIB`` must name the
  built library);
- ``rust/``: a copy of ``cargo doc --no-deps --lib`` output (``--rustdoc``).

Needs markdown-it-py and pdoc (python/requirements-test.txt); works offline.
"""

from __future__ import annotations

import argparse
import html
import os
import re
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

from markdown_it import MarkdownIt

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_links import is_external, unique_slugs  # noqa: E402

REPO = Path(__file__).resolve().parent.parent

# The Markdown pages, in the index's order: (source, title shown in the index).
GUIDES = [
    ("docs/guide-c.md", "C: filter, split and merge"),
    ("docs/guide-cpp.md", "C++: filter, split and merge"),
    ("docs/guide-python.md", "Python: filter, split and merge"),
]
REFERENCE_HEADERS = {
    "include/nnx_state.h": ("api/c.html", "C API: nnx_state.h"),
    "include/nnx_state.hpp": ("api/cpp.html", "C++ API: nnx_state.hpp"),
}
# Sources whose links lead to their reference pages.
REFERENCE_PAGES = {
    **{source: site_path for source, (site_path, _) in REFERENCE_HEADERS.items()},
    "python/nnx_state/__init__.py": "python/nnx_state.html",
    "src/lib.rs": "rust/nnx_state/index.html",
}

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 0 auto; padding: 0 1rem 4rem;
       line-height: 1.5; color: #1b1b1b; }
nav.top { border-bottom: 1px solid #ccc; padding: .6rem 0; margin-bottom: 1rem; }
nav.top a { margin-right: 1rem; }
pre { background: #f5f5f5; padding: .6rem .8rem; overflow-x: auto; line-height: 1.35; }
code { font-family: ui-monospace, monospace; font-size: .92em; }
table { border-collapse: collapse; } td, th { border: 1px solid #ccc; padding: .2rem .5rem; }
.entry { border-top: 1px solid #ddd; margin-top: 1.5rem; }
.entry h3 { font-family: ui-monospace, monospace; font-size: 1.05rem; }
.toc { columns: 2; } .toc li { break-inside: avoid; }
"""


def page(title: str, body: str, depth: int) -> str:
    """A whole HTML page at ``depth`` directories below the site root."""
    up = "../" * depth
    nav = " ".join(
        f'<a href="{up}{href}">{html.escape(text)}</a>'
        for href, text in [
            ("index.html", "nnx-state"),
            ("docs/guide-c.html", "C guide"),
            ("docs/guide-cpp.html", "C++ guide"),
            ("docs/guide-python.html", "Python guide"),
            ("api/c.html", "C API"),
            ("api/cpp.html", "C++ API"),
            ("python/nnx_state.html", "Python API"),
            ("rust/nnx_state/index.html", "Rust API"),
        ]
    )
    return (
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
        f'<nav class="top">{nav}</nav>\n{body}\n</body>\n</html>\n'
    )


def relative(target: str, start: str) -> str:
    """The href from the site page ``start`` to the site path ``target``."""
    return os.path.relpath(target, os.path.dirname(start) or ".").replace(os.sep, "/")


# ---------------------------------------------------------------------------
# Markdown pages
# ---------------------------------------------------------------------------


def markdown_pages() -> dict[str, str]:
    """Source path -> site path of every Markdown page."""
    pages = {"README.md": "readme.html"}
    for source in sorted((REPO / "docs").glob("*.md")):
        rel = source.relative_to(REPO).as_posix()
        pages[rel] = rel[: -len(".md")] + ".html"
    return pages


class Site:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.pages = markdown_pages()
        self.md = MarkdownIt("commonmark", {"html": True}).enable("table")
        self.titles: dict[str, str] = {}  # source -> its first heading

    def write(self, site_path: str, text: str) -> None:
        path = self.out / site_path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")

    def site_target(self, source: str, url: str) -> str:
        """Where a relative link of the Markdown file ``source`` goes in the site."""
        path, _, fragment = url.partition("#")
        if not path:
            return url
        target = os.path.normpath(os.path.join(os.path.dirname(source), path)).replace(os.sep, "/")
        if target.startswith("../") or target == "..":
            raise SystemExit(f"build_site: {source}: {url} points outside the repository")
        if target in self.pages:
            site_path = self.pages[target]
        elif target in REFERENCE_PAGES:
            site_path = REFERENCE_PAGES[target]
        elif (REPO / target).is_file():
            site_path = self.source_page(target)
        else:
            raise SystemExit(f"build_site: {source}: {url}: not a file of the repository")
        href = relative(site_path, self.pages[source])
        return f"{href}#{fragment}" if fragment else href

    def source_page(self, source: str) -> str:
        """Writes ``files/SOURCE.html``, a repository file as text, and gives its site path."""
        site_path = f"files/{source}.html"
        text = (REPO / source).read_text(encoding="utf-8")
        body = f"<h1><code>{html.escape(source)}</code></h1>\n<pre>{html.escape(text)}</pre>"
        self.write(site_path, page(source, body, site_path.count("/")))
        return site_path

    def render_markdown(self, source: str) -> None:
        text = (REPO / source).read_text(encoding="utf-8")
        tokens = self.md.parse(text)
        headings = [i for i, t in enumerate(tokens) if t.type == "heading_open"]
        slugs = unique_slugs(tokens[i + 1].content.replace("`", "") for i in headings)
        for i, slug in zip(headings, slugs):
            tokens[i].attrSet("id", slug)
        for token in tokens:
            for child in token.children or []:
                attr = {"link_open": "href", "image": "src"}.get(child.type)
                url = child.attrGet(attr) if attr else None
                if url and not is_external(url):
                    child.attrSet(attr, self.site_target(source, url))
        title = next((tokens[i + 1].content for i in headings), source).replace("`", "")
        self.titles[source] = title
        body = self.md.renderer.render(tokens, self.md.options, {})
        site_path = self.pages[source]
        self.write(site_path, page(title, body, site_path.count("/")))


# ---------------------------------------------------------------------------
# Header reference pages
# ---------------------------------------------------------------------------


@dataclass
class Entry:
    """One documented declaration of a header."""

    name: str
    kind: str  # "function", "type", "constant", "class", "member"
    declaration: str
    doc: str
    anchor: str = ""
    members: list[Entry] = field(default_factory=list)


def _strip_c_comment(lines: list[str]) -> str:
    """The text of a ``/** ... */`` or ``/* ... */`` block, without the stars."""
    body = "\n".join(lines).strip()
    body = re.sub(r"^/\*\*?", "", body)
    body = re.sub(r"\*/$", "", body)
    out = []
    for line in body.split("\n"):
        out.append(re.sub(r"^\s*\* ?", "", line) if line.strip().startswith("*") else line.strip())
    return "\n".join(out).strip("\n")


_IDENT_BEFORE_PAREN = re.compile(r"(~?\w+)\s*\($")


def _c_name(declaration: str) -> str:
    flat = " ".join(declaration.split())
    if flat.startswith("#define"):
        return flat.split()[1]
    m = re.search(r"\(\s*\*\s*(\w+)\s*\)", flat)
    if flat.startswith("typedef") and m:
        return m.group(1)
    if flat.startswith("typedef"):
        return re.findall(r"(\w+)\s*;\s*$", flat)[0]
    return re.search(r"(\w+)\s*\(", flat).group(1)


def parse_c_header(text: str) -> tuple[str, list[Entry]]:
    """The overview comment and the documented declarations of nnx_state.h."""
    lines = text.split("\n")
    overview_end = next(i for i, line in enumerate(lines) if line.strip().endswith("*/"))
    overview = _strip_c_comment(lines[: overview_end + 1])
    entries: list[Entry] = []
    i = overview_end + 1
    doc = ""
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if stripped.startswith("/**"):
            start = i
            while not lines[i].strip().endswith("*/"):
                i += 1
            doc = _strip_c_comment(lines[start : i + 1])
            i += 1
            continue
        if stripped.startswith("#define") and stripped.split()[1].startswith("NNX_"):
            if not stripped.split()[1].endswith("_H"):
                entries.append(Entry(stripped.split()[1], "constant", stripped, doc))
            doc = ""
        elif doc and stripped and not stripped.startswith(("#", "//", "/*", "}")):
            start = i
            if re.match(r"typedef (enum|struct) \w+ \{", stripped):
                # The members are entries of their own; the declaration is shortened.
                i, members = _parse_c_body(lines, i)
                name = re.search(r"(\w+)\s*;", lines[i]).group(1)
                declaration = f"{lines[start]} ... {lines[i].strip()}"
                entry = Entry(name, "type", declaration, doc, members=members)
            else:
                while not lines[i].rstrip().endswith(";"):
                    i += 1
                declaration = "\n".join(lines[start : i + 1])
                kind = "type" if stripped.startswith("typedef") else "function"
                entry = Entry(_c_name(declaration), kind, declaration, doc)
            entries.append(entry)
            doc = ""
        i += 1
    return overview, entries


def _parse_c_body(lines: list[str], i: int) -> tuple[int, list[Entry]]:
    """The documented enumerators or fields of an enum or struct typedef
    starting at line ``i``: (index of the closing line, members)."""
    members = []
    doc = ""
    i += 1
    while not lines[i].strip().startswith("}"):
        stripped = lines[i].strip()
        if stripped.startswith("/**"):
            start = i
            while not lines[i].strip().endswith("*/"):
                i += 1
            doc = _strip_c_comment(lines[start : i + 1])
        elif stripped:
            name = re.match(r"(\w+)\s*(=|,|$)", stripped)
            if name is None:
                name = re.search(r"(\w+)\s*(\[[^\]]*\])?;$", stripped)
            members.append(Entry(name.group(1), "member", stripped.rstrip(","), doc))
            doc = ""
        i += 1
    return i, members


def _code_only(line: str, in_comment: bool) -> tuple[str, bool]:
    """``line`` with string and character literals and comments blanked, and
    whether a block comment is still open at its end."""
    out = []
    j = 0
    while j < len(line):
        if in_comment:
            end = line.find("*/", j)
            if end < 0:
                return "".join(out), True
            j = end + 2
            in_comment = False
            continue
        c = line[j]
        if line.startswith("//", j):
            break
        if line.startswith("/*", j):
            in_comment = True
            j += 2
            continue
        if c in "\"'":
            end = j + 1
            while end < len(line) and line[end] != c:
                end += 2 if line[end] == "\\" else 1
            out.append(c + c)
            j = end + 1
            continue
        out.append(c)
        j += 1
    return "".join(out), in_comment


def _cpp_name(declaration: str) -> str:
    flat = " ".join(declaration.split())
    flat = re.sub(r"^template\s*<.*?>\s*(?=[A-Za-z])", "", flat)
    m = re.match(r"using (\w+)\s*=", flat)
    if m:
        return m.group(1)
    m = re.match(r"(?:enum\s+)?(?:class|struct)\s+(\w+)", flat)
    if m:
        return m.group(1)
    m = re.search(r"\b(operator\s*(?:\(\)|[^\s(]+))\s*\(", flat)
    if m:
        return "".join(m.group(1).split())
    depth = 0
    for k, c in enumerate(flat):
        if c == "<":
            depth += 1
        elif c == ">" and depth:
            depth -= 1
        elif c == "(" and depth == 0:
            m = _IDENT_BEFORE_PAREN.search(flat[: k + 1])
            if m:
                return " ".join(m.group(1).split())
    m = re.findall(r"(\w+)\s*(?:=|;|\{|\[)", flat)
    return m[0] if m else flat.split()[-1]


def parse_cpp_header(text: str) -> tuple[str, list[Entry]]:
    """The overview comment and the documented declarations of nnx_state.hpp,
    outside ``namespace detail`` and function bodies; members of classes are
    named ``Class::member``."""
    lines = text.split("\n")
    overview_end = next(i for i, line in enumerate(lines) if line.strip().endswith("*/"))
    overview = _strip_c_comment(lines[: overview_end + 1])
    entries: list[Entry] = []
    scopes: list[str] = []  # a class name, "ns:NAME", or "" (a body or initializer)
    pending = ""  # code since the last ; { or }
    in_comment = False
    doc_lines: list[str] = []
    capture: dict | None = None  # the declaration being read after a doc block
    for line in lines[overview_end + 1 :]:
        stripped = line.strip()
        if stripped.startswith("///") and capture is None:
            doc_lines.append(stripped[3:][1:] if stripped[3:4] == " " else stripped[3:])
            continue
        code, in_comment = _code_only(line, in_comment)
        if doc_lines and capture is None and code.strip():
            hidden = any(s == "" or s == "ns:detail" for s in scopes)
            capture = {"doc": "\n".join(doc_lines), "text": "", "hidden": hidden,
                       "scope": [s for s in scopes if s and not s.startswith("ns:")], "parens": 0}
            doc_lines = []
        elif doc_lines and not code.strip() and not stripped:
            doc_lines = []  # a doc block followed by a blank line documents nothing
        for c in code:
            finished = False
            if capture is not None:
                if c in "({[" and not (c == "{" and capture["parens"] == 0):
                    capture["parens"] += 1
                elif c in ")}]" and capture["parens"] > 0:
                    capture["parens"] -= 1
                elif c in "{;" and capture["parens"] == 0:
                    _finish_cpp(capture, entries, line_end=c)
                    capture = None
                    finished = True
                if capture is not None:
                    capture["text"] += c
            if c == "{":
                m = re.search(r"\bnamespace\s+(\w+)\s*$", pending)
                cls = re.search(r"\b(?:class|struct)\s+(\w+)(?:\s+final)?\s*(?::[^;]*)?$", pending)
                if m:
                    scopes.append("ns:" + m.group(1))
                elif cls and "(" not in pending and "=" not in pending:
                    if not finished and all(x.startswith("ns:") and x != "ns:detail" for x in scopes):
                        # A namespace-level class without a doc comment still heads its members.
                        entries.append(Entry(cls.group(1), "class", " ".join(pending.split()), ""))
                    scopes.append(cls.group(1))
                else:
                    scopes.append("")
                pending = ""
            elif c == "}":
                if scopes:
                    scopes.pop()
                pending = ""
            elif c == ";":
                pending = ""
            else:
                pending += c
        if capture is not None:
            capture["text"] += "\n"
        pending += " "
    return overview, entries


def _finish_cpp(capture: dict, entries: list[Entry], line_end: str) -> None:
    if capture["hidden"]:
        return
    declaration = textwrap.dedent(capture["text"].strip("\n")).strip()
    declaration = "\n".join(line.rstrip() for line in declaration.split("\n"))
    # A constructor's member initializers are not part of its interface.
    declaration = re.sub(r"\)(\s*(?:const|noexcept)?\s*)\s:\s[^:].*\Z", r")\1", declaration, flags=re.S)
    declaration = declaration.rstrip() + (";" if line_end == ";" else "")
    name = _cpp_name(declaration)
    qualified = "::".join(capture["scope"] + [name])
    flat = " ".join(declaration.split())
    if re.match(r"(?:template\s*<.*?>\s*)?(?:enum\s+)?(?:class|struct)\s+\w+", flat) and not capture["scope"]:
        kind = "class"
    elif capture["scope"]:
        kind = "member"
    elif flat.startswith("using"):
        kind = "type"
    else:
        kind = "function"
    entries.append(Entry(qualified, kind, declaration, capture["doc"]))


def _anchors(entries: list[Entry]) -> None:
    """Unique ids: the name, then NAME-2, NAME-3 for overloads."""
    seen: dict[str, int] = {}
    for entry in entries:
        for e in [entry, *entry.members]:
            seen[e.name] = seen.get(e.name, 0) + 1
            e.anchor = e.name if seen[e.name] == 1 else f"{e.name}-{seen[e.name]}"


def _link_names(rendered: str, targets: dict[str, str]) -> str:
    """``<code>name</code>`` and ``<code>name()</code>`` become links where
    ``name`` has an entry."""

    def link(m: re.Match) -> str:
        name = m.group(1)
        href = targets.get(name)
        return f'<a href="{href}">{m.group(0)}</a>' if href else m.group(0)

    return re.sub(r"<code>([\w:]+)(?:\(\))?</code>", link, rendered)


def _link_words(escaped: str, targets: dict[str, str]) -> str:
    """C names (``nnx_...``, ``NNX_...``) in escaped plain text become links
    where they have an entry."""

    def link(m: re.Match) -> str:
        href = targets.get(m.group(0))
        return f'<a href="{href}">{m.group(0)}</a>' if href else m.group(0)

    return re.sub(r"\b(?:nnx|NNX)_\w+\b(?!\.\w)", link, escaped)


def _plain_doc(text: str) -> str:
    """A ``///`` comment as HTML: paragraphs, and indented or listed lines kept as written."""
    out = []
    for block in re.split(r"\n\s*\n", text.strip()):
        lines = block.split("\n")
        if any(line.startswith(("  ", "- ", "* ")) for line in lines[1:]) or lines[0].startswith("- "):
            out.append(f"<pre>{html.escape(block)}</pre>")
        else:
            out.append(f"<p>{html.escape(' '.join(lines))}</p>")
    return "\n".join(out)


def render_header(site: Site, source: str, markdown_docs: bool) -> None:
    site_path, title = REFERENCE_HEADERS[source]
    text = (REPO / source).read_text(encoding="utf-8")
    overview, entries = (parse_c_header if markdown_docs else parse_cpp_header)(text)
    _anchors(entries)
    targets = {}
    if not markdown_docs:
        c_entries = parse_c_header((REPO / "include/nnx_state.h").read_text(encoding="utf-8"))[1]
        _anchors(c_entries)
        for entry in c_entries:
            for e in [entry, *entry.members]:
                targets.setdefault(e.name, f"c.html#{e.anchor}")
    for entry in entries:
        for e in [entry, *entry.members]:
            targets.setdefault(e.name, f"#{e.anchor}")

    def doc_html(doc: str) -> str:
        if markdown_docs:
            return _link_names(site.md.render(doc), targets)
        return _link_words(_plain_doc(doc), targets)

    # C: types, constants, then the functions by handle (nnx_state_*, ...);
    # C++: the namespace's functions and aliases, then each class with its
    # members. Groups, and entries in them, in the header's order.
    groups: dict[str, list[Entry]] = {"Types": [], "Constants": []} if markdown_docs else {}
    for entry in entries:
        if markdown_docs and entry.kind == "function":
            group = "Functions: " + "_".join(entry.name.split("_")[:2]) + "_*"
        elif markdown_docs:
            group = {"type": "Types", "constant": "Constants"}[entry.kind]
        elif entry.kind in ("class", "member"):
            group = "class " + entry.name.split("::")[0]
        else:
            group = "Functions and types"
        groups.setdefault(group, []).append(entry)
    order = [g for g in groups if groups[g]]
    if "Functions and types" in order:
        order.remove("Functions and types")
        order.insert(0, "Functions and types")
    toc = []
    body = []
    for n, group in enumerate(order):
        gid = f"group-{n}"
        first = {}  # overloads are listed once, by their first declaration
        for e in groups[group]:
            first.setdefault(e.name, e.anchor)
        items = ", ".join(f'<a href="#{anchor}"><code>{html.escape(name)}</code></a>'
                          for name, anchor in first.items())
        toc.append(f'<li><a href="#{gid}">{html.escape(group)}</a>: {items}</li>')
        body.append(f'<h2 id="{gid}">{html.escape(group)}</h2>')
        for entry in groups[group]:
            body.append(f'<div class="entry"><h3 id="{entry.anchor}">{html.escape(entry.name)}</h3>')
            body.append(f"<pre><code>{html.escape(entry.declaration)}</code></pre>")
            body.append(doc_html(entry.doc))
            for member in entry.members:
                body.append(
                    f'<p id="{member.anchor}"><code>{html.escape(member.declaration)}</code></p>'
                    f"<blockquote>{doc_html(member.doc)}</blockquote>"
                )
            body.append("</div>")
    header = (
        f"<h1>{html.escape(title)}</h1>\n"
        f"<p>Rendered from <code>{source}</code> (its doc comments and declarations); "
        f'<a href="../{site.source_page(source)}">the header itself</a>.</p>\n'
        f"<pre>{_link_words(html.escape(overview), targets)}</pre>\n<h2 id=\"contents\">Contents</h2>\n"
        f'<ul class="toc">{"".join(toc)}</ul>\n'
    )
    site.write(site_path, page(title, header + "\n".join(body), 1))


# ---------------------------------------------------------------------------
# Python (pdoc), Rust (rustdoc), the index
# ---------------------------------------------------------------------------


def render_python(out: Path) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "python"), env.get("PYTHONPATH")]))
    subprocess.run(
        [sys.executable, "-m", "pdoc", "--no-search", "--no-show-source",
         "-t", str(REPO / "scripts" / "pdoc-templates"), "-o", str(out / "python"), "nnx_state"],
        check=True, env=env,
    )


def copy_rustdoc(rustdoc: Path, out: Path) -> None:
    """The rustdoc tree, with an index.html of its own: rustdoc's settings
    and help pages link to one, which a single crate's docs lack."""
    if not (rustdoc / "nnx_state" / "index.html").is_file():
        raise SystemExit(f"build_site: no rustdoc in {rustdoc}: run cargo doc --no-deps --lib")
    shutil.copytree(rustdoc, out / "rust")
    index = out / "rust" / "index.html"
    if not index.exists():
        body = '<h1>Rust API</h1><p><a href="nnx_state/index.html">The nnx_state crate</a>.</p>'
        index.write_text(page("Rust API", body, 1), encoding="utf-8")


def render_index(site: Site) -> None:
    def li(href: str, text: str, what: str) -> str:
        return f'<li><a href="{href}">{html.escape(text)}</a>: {what}</li>'

    guides = "".join(li(site.pages[src], title, "the three seed tasks, with build instructions")
                     for src, title in GUIDES)
    docs = "".join(
        li(site_path, src, html.escape(site.titles[src]))
        for src, site_path in site.pages.items() if src not in dict(GUIDES)
    )
    reference = "".join([
        li("api/c.html", "C API (nnx_state.h)", "every function's ownership, lifetimes, errors, threads"),
        li("api/cpp.html", "C++ API (nnx_state.hpp)", "the header-only C++17 classes"),
        li("python/nnx_state.html", "Python API (nnx_state)", "rendered from the docstrings by pdoc"),
        li("rust/nnx_state/index.html", "Rust API (nnx_state crate)", "rustdoc"),
    ])
    body = (
        "<h1>nnx-state documentation</h1>\n"
        "<p>Flax NNX's <code>State</code> in Rust, as a C library, with C++ and Python APIs.</p>\n"
        f"<h2 id=\"guides\">Guides</h2><ul>{guides}</ul>\n"
        f"<h2 id=\"reference\">API reference</h2><ul>{reference}</ul>\n"
        f"<h2 id=\"documents\">Documents</h2><ul>{docs}</ul>\n"
    )
    site.write("index.html", page("nnx-state documentation", body, 0))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rustdoc", type=Path, default=REPO / "target" / "doc")
    args = parser.parse_args()
    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)
    site = Site(args.out)
    missing = [src for src, _ in GUIDES if src not in site.pages]
    if missing:
        raise SystemExit(f"build_site: missing guides: {', '.join(missing)}")
    for source in site.pages:
        site.render_markdown(source)
    render_header(site, "include/nnx_state.h", markdown_docs=True)
    render_header(site, "include/nnx_state.hpp", markdown_docs=False)
    render_python(args.out)
    copy_rustdoc(args.rustdoc, args.out)
    render_index(site)
    print(f"build_site: wrote {args.out}/index.html")
    return 0


if __name__ == "__main__":
    sys.exit(main())
