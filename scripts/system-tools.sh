#!/usr/bin/env bash
# Makes sure cmake and pkg-config are there for the packaging test (which
# builds CMake and pkg-config consumers of the installed library).
#
# When one is missing and this runs as root on a machine with apt-get (a
# fresh Debian container, as CI runs), it installs both SYSTEM-WIDE with
# apt-get, after a line saying so. NNX_NO_SYSTEM_INSTALL=1 leaves the system
# alone; so does running as any other user. Without the tools the packaging
# test says which parts it skipped and passes.
set -euo pipefail

step() { printf '\n==> %s\n' "$*"; }

if command -v cmake >/dev/null && command -v pkg-config >/dev/null; then
  exit 0
fi
if [ "${NNX_NO_SYSTEM_INSTALL:-0}" != 0 ]; then
  step "cmake or pkg-config is missing; NNX_NO_SYSTEM_INSTALL is set, so nothing is installed (the packaging test skips its CMake and pkg-config parts)"
elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  step "installing cmake and pkg-config SYSTEM-WIDE with apt-get (running as root; NNX_NO_SYSTEM_INSTALL=1 skips this)"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends cmake pkg-config >/dev/null
else
  step "cmake or pkg-config is missing: the packaging test skips its CMake and pkg-config parts"
fi
