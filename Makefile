# Builds the library and the C examples against it.
#
#   make lib        cargo build --release (target/release/libnnx_state.{a,so})
#   make example    builds and runs examples-c/seed_example.c
#   make examples   builds and runs every examples-c/*.c
#   make test       runs every test (scripts/test.sh: Rust, C, C++, Python, docs)
#   make docs       builds the documentation site in target/doc-site (guides,
#                   docs/*.md, the C and C++ references, the Python API, the
#                   rustdoc) and checks its links (scripts/docs.sh)
#   make install    builds the library and the nnx-state tool and installs them
#                   (packaging/install.sh): PREFIX=/usr/local, DESTDIR= (staging
#                   root), bindir=$(PREFIX)/bin, libdir=$(PREFIX)/lib,
#                   includedir=$(PREFIX)/include; the shared library and the tool
#                   are stripped of debug information by STRIP (default strip;
#                   STRIP= keeps it, SPLIT_DEBUG=1 keeps it in .debug files
#                   beside them); NO_BUILD=1 installs what LIBDIR (default
#                   target/release) already holds, without cargo
#   make uninstall  removes what `make install` with the same variables wrote
#   make wheel      builds the library and a Python wheel that carries it
#                   (python/build_wheel.sh) into WHEEL_DIR (default target/wheels)
#
# The examples link the static library, so they run without LD_LIBRARY_PATH.

CARGO   ?= cargo
CC      ?= cc
CFLAGS  ?= -std=c11 -Wall -Wextra -Werror -O2 -g
LDLIBS  ?= -lpthread -ldl -lm

LIBDIR  := target/release
STATIC  := $(LIBDIR)/libnnx_state.a
OUTDIR  := target/examples
EXAMPLE_SRCS := $(wildcard examples-c/*.c)
EXAMPLE_BINS := $(EXAMPLE_SRCS:examples-c/%.c=$(OUTDIR)/%)

# Installation directories, GNU style (see packaging/install.sh).
PREFIX     ?= /usr/local
DESTDIR    ?=
bindir     ?= $(PREFIX)/bin
libdir     ?= $(PREFIX)/lib
includedir ?= $(PREFIX)/include
STRIP      ?= strip
SPLIT_DEBUG ?=
INSTALL_ARGS = --prefix "$(PREFIX)" --bindir "$(bindir)" --libdir "$(libdir)" \
               --includedir "$(includedir)" --destdir "$(DESTDIR)" --from "$(LIBDIR)" \
               --strip "$(STRIP)" $(if $(SPLIT_DEBUG),--split-debug)

# Where `make wheel` puts the wheel.
WHEEL_DIR  ?= target/wheels

.PHONY: all lib example examples test docs install uninstall wheel

all: lib

# Cargo decides what is stale, so this always asks it.
lib:
	$(CARGO) build --release

# Every binary is relinked after `lib`: cheap, and never stale.
$(OUTDIR)/%: examples-c/%.c include/nnx_state.h lib
	@mkdir -p $(OUTDIR)
	$(CC) $(CFLAGS) -Iinclude $< $(STATIC) $(LDLIBS) -o $@

example: $(OUTDIR)/seed_example
	$(OUTDIR)/seed_example

examples: $(EXAMPLE_BINS)
	@set -e; for bin in $(EXAMPLE_BINS); do echo "== $$bin"; $$bin; done

# Every test: Rust, the C programs, the C11/C++17 header checks (all through
# cargo test) and the Python package in its own virtual environment.
test:
	./scripts/test.sh

# One static site, target/doc-site/index.html, from README.md, docs/*.md, the
# headers' doc comments, the Python docstrings (pdoc, in target/pyvenv) and
# cargo doc; a broken link or anchor fails it.
docs:
	./scripts/docs.sh

# The nnx-state tool, the shared library (with its soname and symlinks), the
# static library, both headers, a pkg-config file and a CMake package, under
# $(DESTDIR)$(PREFIX).
install: $(if $(NO_BUILD),,lib)
	./packaging/install.sh $(INSTALL_ARGS)

uninstall:
	./packaging/install.sh --uninstall $(INSTALL_ARGS)

# A platform wheel of the Python package carrying libnnx_state.so, for
# `pip install` on machines without Rust. The script runs cargo build
# --release and builds from a copy of python/, leaving the source tree as is.
wheel:
	./python/build_wheel.sh --out "$(WHEEL_DIR)"
