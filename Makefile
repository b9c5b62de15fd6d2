# Builds the library and the C examples against it.
#
#   make lib        cargo build --release (target/release/libnnx_state.{a,so})
#   make example    builds and runs examples-c/seed_example.c
#   make examples   builds and runs every examples-c/*.c
#   make test       runs every test (scripts/test.sh: Rust, C, C++, Python)
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

.PHONY: all lib example examples test

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
