#!/usr/bin/env bash
# Installs the built nnx_state library into a prefix: what `make install` runs
# after `cargo build --release`.
#
#   packaging/install.sh [--prefix DIR] [--bindir DIR] [--libdir DIR]
#                        [--includedir DIR] [--destdir DIR] [--from DIR]
#                        [--strip PROGRAM | --no-strip] [--split-debug]
#                        [--uninstall]
#
#   --prefix DIR      where the library will live (default /usr/local)
#   --bindir DIR      the nnx-state tool (default PREFIX/bin); relative to
#                     PREFIX unless absolute
#   --libdir DIR      libraries, pkg-config and CMake files (default PREFIX/lib);
#                     relative to PREFIX unless absolute
#   --includedir DIR  headers (default PREFIX/include); relative to PREFIX
#                     unless absolute
#   --destdir DIR     staging root: files go to DIR/PREFIX/..., while the
#                     paths written inside them name PREFIX (as DESTDIR in
#                     make; default $DESTDIR)
#   --from DIR        where the built libnnx_state.so, libnnx_state.a and
#                     nnx-state are (default target/release)
#   --strip PROGRAM   the program that strips debug information from the
#                     installed shared library and tool (default $STRIP, else
#                     strip); an empty PROGRAM keeps it, as --no-strip does
#   --no-strip        install the shared library and the tool as built, with
#                     their debug information (cargo's release profile keeps
#                     it: about 12 MB instead of 1.5 MB)
#   --split-debug     strip, and keep the debug information beside the
#                     library as libnnx_state.so.X.Y.Z.debug (and
#                     nnx-state.debug beside the tool), linked with
#                     .gnu_debuglink so that gdb finds it (needs objcopy)
#   --uninstall       remove what an install with the same options wrote
#
# It writes, for version X.Y.Z of Cargo.toml:
#   BINDIR/nnx-state                    the command-line tool
#   LIBDIR/libnnx_state.so.X.Y.Z        the shared library, soname libnnx_state.so.X
#   LIBDIR/libnnx_state.so.X            -> libnnx_state.so.X.Y.Z
#   LIBDIR/libnnx_state.so              -> libnnx_state.so.X  (for -lnnx_state)
#   LIBDIR/libnnx_state.a               the static library
#   INCLUDEDIR/nnx_state.h, nnx_state.hpp
#   LIBDIR/pkgconfig/nnx_state.pc
#   LIBDIR/cmake/nnx_state/nnx_stateConfig.cmake, nnx_stateConfigVersion.cmake
# The shared library and the tool are stripped of debug information (strip
# --strip-debug, as the wheel's library is); the static library is installed
# as built.
#
# Linux and other ELF systems only.
set -euo pipefail

die() {
    echo "install.sh: $*" >&2
    exit 1
}

prefix=/usr/local
bindir=
libdir=
includedir=
strip_program=${STRIP-strip}
split_debug=false
destdir=${DESTDIR:-}
from=
uninstall=false
while [ $# -gt 0 ]; do
    case "$1" in
    --prefix) prefix=${2:?--prefix needs a directory}; shift 2 ;;
    --prefix=*) prefix=${1#*=}; shift ;;
    --bindir) bindir=${2:?--bindir needs a directory}; shift 2 ;;
    --bindir=*) bindir=${1#*=}; shift ;;
    --strip) strip_program=${2?--strip needs a program (or "" to keep debug information)}; shift 2 ;;
    --strip=*) strip_program=${1#*=}; shift ;;
    --no-strip) strip_program=; shift ;;
    --split-debug) split_debug=true; shift ;;
    --libdir) libdir=${2:?--libdir needs a directory}; shift 2 ;;
    --libdir=*) libdir=${1#*=}; shift ;;
    --includedir) includedir=${2:?--includedir needs a directory}; shift 2 ;;
    --includedir=*) includedir=${1#*=}; shift ;;
    --destdir) destdir=${2?--destdir needs a directory}; shift 2 ;;
    --destdir=*) destdir=${1#*=}; shift ;;
    --from) from=${2:?--from needs a directory}; shift 2 ;;
    --from=*) from=${1#*=}; shift ;;
    --uninstall) uninstall=true; shift ;;
    -h | --help) sed -n '2,/^# Linux/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
    esac
done

case "$(uname -s)" in
Darwin | *MINGW* | *MSYS* | *CYGWIN*) die "only Linux and other ELF systems are supported" ;;
esac

# Paths are resolved against the caller's directory, before moving to the crate.
absolute() {
    case "$1" in
    /*) printf '%s\n' "$1" ;;
    *) printf '%s/%s\n' "$PWD" "$1" ;;
    esac
}
[ -n "$prefix" ] || die "--prefix is empty"
prefix=$(absolute "$prefix")
prefix=${prefix%/}  # "/" becomes "", so that "$prefix/lib" is "/lib"
under_prefix() {    # a directory relative to the prefix, unless absolute
    case "$1" in
    /*) printf '%s\n' "${1%/}" ;;
    *) printf '%s/%s\n' "$prefix" "${1%/}" ;;
    esac
}
bindir=$(under_prefix "${bindir:-bin}")
libdir=$(under_prefix "${libdir:-lib}")
includedir=$(under_prefix "${includedir:-include}")
[ -z "$destdir" ] || destdir=$(absolute "$destdir")
destdir=${destdir%/}

crate=$(cd "$(dirname "$0")/.." && pwd)
from=$(absolute "${from:-$crate/target/release}")
cd "$crate"

# The version, from Cargo.toml; the header's macros must agree.
version=$(sed -n 's/^version *= *"\([^"]*\)".*/\1/p' Cargo.toml | head -n 1)
[[ "$version" =~ ^([0-9]+)\.([0-9]+)\.([0-9]+) ]] || die "no version in Cargo.toml"
major=${BASH_REMATCH[1]}
numeric="${BASH_REMATCH[1]}.${BASH_REMATCH[2]}.${BASH_REMATCH[3]}"
header_version=$(sed -n 's/^#define NNX_STATE_VERSION "\(.*\)"$/\1/p' include/nnx_state.h)
[ "$header_version" = "$version" ] ||
    die "include/nnx_state.h says version '$header_version', Cargo.toml '$version': run cargo build"

soname="libnnx_state.so.$major"
real="libnnx_state.so.$numeric"
pc_dir="$libdir/pkgconfig"
cmake_dir="$libdir/cmake/nnx_state"

if $uninstall; then
    for f in "$bindir/nnx-state" "$bindir/nnx-state.debug" "$libdir/$real.debug" \
        "$libdir/libnnx_state.so" "$libdir/$soname" "$libdir/$real" \
        "$libdir/libnnx_state.a" "$includedir/nnx_state.h" "$includedir/nnx_state.hpp" \
        "$pc_dir/nnx_state.pc" "$cmake_dir/nnx_stateConfig.cmake" \
        "$cmake_dir/nnx_stateConfigVersion.cmake"; do
        rm -f "$destdir$f"
    done
    rmdir "$destdir$cmake_dir" 2>/dev/null || true
    echo "removed nnx_state $version from $destdir$prefix"
    exit 0
fi

shared="$from/libnnx_state.so"
static="$from/libnnx_state.a"
tool="$from/nnx-state"
[ -f "$shared" ] && [ -f "$static" ] && [ -f "$tool" ] ||
    die "$shared, $static or $tool is missing: run 'cargo build --release' (or 'make install')"
if $split_debug; then
    command -v objcopy >/dev/null 2>&1 || die "--split-debug needs objcopy (binutils)"
    [ -n "$strip_program" ] || die "--split-debug strips: it cannot go with --no-strip"
fi
if [ -n "$strip_program" ] && ! command -v "$strip_program" >/dev/null 2>&1; then
    die "cannot strip: '$strip_program' is not installed (install binutils, or pass --no-strip)"
fi
sizeof_void_p=
if command -v readelf >/dev/null 2>&1; then
    built_soname=$(readelf -d "$shared" | sed -n 's/.*Library soname: \[\(.*\)\].*/\1/p')
    [ "$built_soname" = "$soname" ] ||
        die "$shared has soname '$built_soname', expected '$soname': rebuild it (build.rs sets it)"
    case "$(readelf -h "$shared" | sed -n 's/^ *Class: *//p')" in
    ELF64) sizeof_void_p=8 ;;
    ELF32) sizeof_void_p=4 ;;
    esac
fi

# A path as CMake should see it: relative to the installed config file when
# it is under the prefix, so that the installed tree can be moved.
cmake_path() {
    case "$1" in
    "$prefix"/*) printf '${_nnx_state_prefix}/%s\n' "${1#"$prefix"/}" ;;
    *) printf '%s\n' "$1" ;;
    esac
}
case "$cmake_dir" in
"$prefix"/*)
    rel=${cmake_dir#"$prefix"/}
    up=$(printf '%s\n' "$rel" | sed 's|[^/][^/]*|..|g')
    cmake_prefix="\${CMAKE_CURRENT_LIST_DIR}/$up"
    ;;
*) cmake_prefix=${prefix:-/} ;;
esac
# The same for pkg-config, relative to ${prefix}.
pc_path() {
    case "$1" in
    "$prefix"/*) printf '${prefix}/%s\n' "${1#"$prefix"/}" ;;
    *) printf '%s\n' "$1" ;;
    esac
}

# Substitutes @NAME@ placeholders; values may hold '|', '&' and '\' safely.
fill() {
    local text
    text=$(cat "$1")
    shift
    while [ $# -gt 0 ]; do
        text=${text//"@$1@"/"$2"}
        shift 2
    done
    printf '%s\n' "$text"
}

# Installs a built ELF file, stripped of debug information unless told not
# to; with --split-debug, the debug information goes to FILE.debug first.
install_elf() {
    local target=$2
    install -m 755 "$1" "$target"
    [ -n "$strip_program" ] || return 0
    if $split_debug; then
        objcopy --only-keep-debug "$target" "$target.debug"
        chmod 644 "$target.debug"
    fi
    "$strip_program" --strip-debug "$target"
    if $split_debug; then
        (cd "$(dirname "$target")" && objcopy --add-gnu-debuglink="$(basename "$target").debug" "$(basename "$target")")
    fi
}

install -d "$destdir$bindir" "$destdir$libdir" "$destdir$includedir" "$destdir$pc_dir" \
    "$destdir$cmake_dir"
install_elf "$shared" "$destdir$libdir/$real"
install_elf "$tool" "$destdir$bindir/nnx-state"
ln -sfn "$real" "$destdir$libdir/$soname"
ln -sfn "$soname" "$destdir$libdir/libnnx_state.so"
install -m 644 "$static" "$destdir$libdir/libnnx_state.a"
install -m 644 include/nnx_state.h include/nnx_state.hpp "$destdir$includedir/"

fill packaging/nnx_state.pc.in \
    PREFIX "${prefix:-/}" LIBDIR "$(pc_path "$libdir")" INCLUDEDIR "$(pc_path "$includedir")" \
    VERSION "$version" >"$destdir$pc_dir/nnx_state.pc"
fill packaging/nnx_stateConfig.cmake.in \
    PREFIX "$cmake_prefix" LIBDIR "$(cmake_path "$libdir")" \
    INCLUDEDIR "$(cmake_path "$includedir")" VERSION "$version" \
    SHARED_FILE "$real" SONAME "$soname" >"$destdir$cmake_dir/nnx_stateConfig.cmake"
fill packaging/nnx_stateConfigVersion.cmake.in \
    VERSION "$numeric" MAJOR "$major" SIZEOF_VOID_P "$sizeof_void_p" \
    >"$destdir$cmake_dir/nnx_stateConfigVersion.cmake"
chmod 644 "$destdir$pc_dir/nnx_state.pc" "$destdir$cmake_dir/nnx_stateConfig.cmake" \
    "$destdir$cmake_dir/nnx_stateConfigVersion.cmake"

echo "installed nnx_state $version into $destdir${prefix:-/}"
echo "  $bindir/nnx-state"
echo "  $libdir/$real (soname $soname), $libdir/libnnx_state.a"
echo "  $includedir/nnx_state.h, $includedir/nnx_state.hpp"
echo "  $pc_dir/nnx_state.pc, $cmake_dir/nnx_stateConfig.cmake"
if [ -z "$strip_program" ]; then
    echo "  (not stripped: the shared library and the tool keep their debug information)"
elif $split_debug; then
    echo "  debug information in $libdir/$real.debug and $bindir/nnx-state.debug"
fi
