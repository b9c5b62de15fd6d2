#!/usr/bin/env bash
# Builds the documentation site in target/doc-site (what `make docs` runs)
# and checks its links:
#
#   scripts/docs.sh [--no-build]
#
# 1. cargo build --release (pdoc imports the Python package, which loads
#    target/release/libnnx_state.so) and cargo doc --no-deps --lib; with
#    --no-build, what target/ holds is used as it is (scripts/test.sh has
#    just built the library);
# 2. the virtual environment target/pyvenv with python/requirements-test.txt
#    (scripts/pyvenv.sh: pip runs only when that file changed), which has
#    markdown-it-py and pdoc;
# 3. scripts/build_site.py: the guides and docs/*.md, README.md, the C and
#    C++ references from the headers, the Python API (pdoc), the rustdoc;
# 4. scripts/check_links.py: every relative link and anchor of the site, and
#    the relative links of README.md and docs/*.md, which must stay inside
#    the repository. A broken link fails the script. The site's external
#    links are listed in target/doc-site-external-links.txt, not fetched.
#
# Open target/doc-site/index.html in a browser; no server is needed.
set -euo pipefail
cd "$(dirname "$0")/.."

build=1
case "${1:-}" in
  --no-build) build=0 ;;
  "") ;;
  *) echo "usage: scripts/docs.sh [--no-build]" >&2; exit 2 ;;
esac

site=target/doc-site
venv=target/pyvenv
if [ "$build" = 1 ]; then
  cargo build --release
fi
cargo doc --no-deps --lib --quiet
bash scripts/pyvenv.sh "$venv" python/requirements-test.txt
NNX_STATE_LIB="$PWD/target/release/libnnx_state.so" \
  "$venv/bin/python" scripts/build_site.py --out "$site" --rustdoc target/doc
"$venv/bin/python" scripts/check_links.py --site "$site" \
  --external target/doc-site-external-links.txt \
  --sources README.md docs/*.md
