#!/usr/bin/env python3
"""Checks the links of the documentation, with the standard library only.

    python3 scripts/check_links.py --site target/doc-site
    python3 scripts/check_links.py --sources README.md docs/*.md

``--site DIR``: every relative ``href`` and ``src`` in every HTML file under
DIR must name a file inside DIR (a directory stands for its index.html), and
every ``#fragment`` on a link to an HTML page must be an ``id`` (or an
``<a name>``) on that page. Links to other schemes (``http``, ``https``,
``mailto``, ...) are listed, never fetched: ``--external FILE`` writes them
there, one distinct URL a line.

``--sources FILE...``: the relative links of Markdown files (inline
``[text](target)``, reference definitions ``[label]: target``, and ``href``
/ ``src`` of inline HTML; code spans and fenced blocks are not links) must
resolve to an existing file or directory inside the repository (``--repo``,
default: the directory above this script), never outside it, and a
``#fragment`` on a link to a Markdown file (or on a bare ``#fragment``) must
be one of its headings, as GitHub names them (`heading_slugs`).

Exits 1 and prints every problem when there is one, 0 otherwise.
"""

from __future__ import annotations

import argparse
import html.parser
import os
import re
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

# Attributes that hold a URL, on any element.
URL_ATTRIBUTES = ("href", "src")


def heading_slug(text: str) -> str:
    """The anchor GitHub gives a heading with this text (before numbering
    duplicates): lower case, markup and punctuation other than ``-`` and
    ``_`` dropped, spaces to ``-``."""
    text = re.sub(r"<[^>]+>", "", text)
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def unique_slugs(texts) -> list[str]:
    """The anchors of headings in document order: a repeated slug gets
    ``-1``, ``-2``, ... as on GitHub."""
    seen: dict[str, int] = {}
    slugs = []
    for text in texts:
        slug = heading_slug(text)
        if slug in seen:
            seen[slug] += 1
            slug = f"{slug}-{seen[slug]}"
        else:
            seen[slug] = 0
        slugs.append(slug)
    return slugs


def is_external(url: str) -> bool:
    """A URL with a scheme (``https:``, ``mailto:``) or a network location
    (``//host``): not a file of ours."""
    parts = urlsplit(url)
    return bool(parts.scheme or parts.netloc)


# ---------------------------------------------------------------------------
# The built site
# ---------------------------------------------------------------------------


class _PageParser(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.urls: list[tuple[int, str]] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if value is None:
                continue
            if name == "id" or (tag == "a" and name == "name"):
                self.ids.add(value)
            elif name in URL_ATTRIBUTES:
                self.urls.append((self.getpos()[0], value))

    handle_startendtag = handle_starttag


def _parse_page(path: Path) -> _PageParser:
    parser = _PageParser()
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    parser.close()
    return parser


def _fragment_found(fragment: str, ids: set[str]) -> bool:
    """Whether a page with these ids has the fragment: as written or
    percent-decoded (as browsers look), or, for a line range ``#10-20`` of a
    rustdoc source page, its first line."""
    decoded = unquote(fragment)
    if fragment in ids or decoded in ids:
        return True
    lines = re.fullmatch(r"(\d+)-\d+", decoded)
    return bool(lines) and lines.group(1) in ids


def check_site(site: Path) -> tuple[list[str], set[str]]:
    """Checks every HTML file under ``site``; gives the problems (one line
    each) and the distinct external URLs."""
    site = site.resolve()
    pages = {p.resolve(): _parse_page(p) for p in sorted(site.rglob("*.html"))}
    problems: list[str] = []
    external: set[str] = set()
    for page, parsed in pages.items():
        where = page.relative_to(site)
        for line, url in parsed.urls:
            url = url.strip()
            if not url:
                continue
            if is_external(url):
                if urlsplit(url).scheme in ("http", "https"):
                    external.add(url)
                continue
            parts = urlsplit(url)
            if parts.path:
                target = Path(os.path.normpath(page.parent / unquote(parts.path)))
            else:
                target = page
            if target != site and site not in target.parents:
                problems.append(f"{where}:{line}: {url}: points outside the site")
                continue
            if target.is_dir():
                target = target / "index.html"
            if not target.is_file():
                problems.append(f"{where}:{line}: {url}: no such file")
                continue
            if parts.fragment and target.suffix == ".html":
                ids = pages[target].ids if target in pages else _parse_page(target).ids
                if not _fragment_found(parts.fragment, ids):
                    fragment = unquote(parts.fragment)
                    problems.append(
                        f"{where}:{line}: {url}: no id {fragment!r} in {target.relative_to(site)}"
                    )
    return problems, external


# ---------------------------------------------------------------------------
# Markdown sources
# ---------------------------------------------------------------------------

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,}).*?^ {0,3}\1[ \t]*$", re.M | re.S)
_CODE_SPAN = re.compile(r"(`+)(?!`).*?(?<!`)\1(?!`)", re.S)
_INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s.*)?$", re.M)
_HTML_URL = re.compile(r"""\b(?:href|src)\s*=\s*["']([^"']+)["']""")
_HEADING = re.compile(r"^ {0,3}#{1,6}[ \t]+(.+?)[ \t#]*$", re.M)


def _without_code(text: str) -> str:
    """The text with fenced blocks and code spans blanked (line numbers kept)."""
    blank = lambda m: re.sub(r"[^\n]", " ", m.group(0))  # noqa: E731
    return _CODE_SPAN.sub(blank, _FENCE.sub(blank, text))


def markdown_links(text: str) -> list[tuple[int, str]]:
    """The link targets of a Markdown text, with their line numbers."""
    text = _without_code(text)
    found = []
    for pattern in (_INLINE_LINK, _REFERENCE, _HTML_URL):
        for m in pattern.finditer(text):
            found.append((text.count("\n", 0, m.start(1)) + 1, m.group(1)))
    return sorted(found)


def markdown_headings(text: str) -> list[str]:
    """The heading texts of a Markdown text (ATX headings outside code)."""
    stripped = _FENCE.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)
    return [m.group(1).replace("`", "") for m in _HEADING.finditer(stripped)]


def check_sources(files: list[Path], repo: Path) -> list[str]:
    """Checks the relative links of Markdown files inside ``repo``."""
    repo = repo.resolve()
    problems = []
    for file in files:
        file = file.resolve()
        where = file.relative_to(repo) if repo in file.parents else file
        text = file.read_text(encoding="utf-8")
        for line, url in markdown_links(text):
            if is_external(url):
                continue
            parts = urlsplit(url)
            if url.startswith("/"):
                problems.append(f"{where}:{line}: {url}: an absolute path; link relatively")
                continue
            target = Path(os.path.normpath(file.parent / unquote(parts.path))) if parts.path else file
            if target != repo and repo not in target.parents:
                problems.append(f"{where}:{line}: {url}: points outside the repository")
                continue
            if not target.exists():
                problems.append(f"{where}:{line}: {url}: no such file")
                continue
            fragment = unquote(parts.fragment)
            if fragment and target.suffix == ".md":
                slugs = unique_slugs(markdown_headings(target.read_text(encoding="utf-8")))
                if fragment not in slugs:
                    problems.append(
                        f"{where}:{line}: {url}: no heading {fragment!r} in {target.relative_to(repo)}"
                    )
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--site", type=Path, help="a built site to check")
    parser.add_argument("--external", type=Path, help="where to list the site's external URLs")
    parser.add_argument("--sources", type=Path, nargs="*", default=[], help="Markdown files")
    parser.add_argument(
        "--repo", type=Path, default=Path(__file__).resolve().parent.parent,
        help="the repository the sources' links must stay in",
    )
    args = parser.parse_args(argv)
    if args.site is None and not args.sources:
        parser.error("give --site DIR, --sources FILE..., or both")
    problems = []
    if args.sources:
        source_problems = check_sources(args.sources, args.repo)
        print(f"check_links: {len(args.sources)} Markdown files, {len(source_problems)} broken links")
        problems += source_problems
    if args.site is not None:
        if not args.site.is_dir():
            print(f"check_links: {args.site} is not a directory (run `make docs`)", file=sys.stderr)
            return 1
        site_problems, external = check_site(args.site)
        pages = sum(1 for _ in args.site.rglob("*.html"))
        print(
            f"check_links: {pages} pages in {args.site}, {len(site_problems)} broken links, "
            f"{len(external)} distinct external links (not fetched)"
        )
        if args.external is not None:
            args.external.write_text("".join(f"{u}\n" for u in sorted(external)), encoding="utf-8")
            print(f"check_links: external links listed in {args.external}")
        problems += site_problems
    for problem in problems:
        print(f"  {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
