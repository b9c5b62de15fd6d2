#!/usr/bin/env bash
# Installs the built nnx_state library into a prefix: what `make install` runs
# after `cargo build --release`.
#
#   packaging/install.sh [--prefix DIR] [--libdir DIR] [--includedir DIR]
#                        [--destdir DIR] [--from DIR] [--uninstall]
#
#   --prefix DIR      where the library will live (default /usr/local)
#   --libdir DIR      libraries, pkg-config and CMake files (default PREFIX/lib);
#                     relative to PREFIX unless absolute
#   --includedir DIR  headers (default PREFIX/include); relative to PREFIX
#                     unless absolute
#   --destdir DIR     staging root: files go to DIR/PREFIX/..., while the
#                     paths written inside them name PREFIX (as DESTDIR in
#                     make; default $DESTDIR)
#   --from DIR        where the built libnnx_state.so and libnnx_state.a are
#                     (default target/release)
#   --uninstall       remove what an install with the same options wrote
#
# It writes, for version X.Y.Z of Cargo.toml:
#   LIBDIR/libnnx_state.so.X.Y.Z        the shared library, soname libnnx_state.so.X
#   LIBDIR/libnnx_state.so.X            -> libnnx_state.so.X.Y.Z
#   LIBDIR/libnnx_state.so              -> libnnx_state.so.X  (for -lnnx_state)
#   LIBDIR/libnnx_state.a               the static library
#   INCLUDEDIR/nnx_state.h, nnx_state.hpp
#   LIBDIR/pkgconfig/nnx_state.pc
#   LIBDIR/cmake/nnx_state/nnx_stateConfig.cmake, nnx_stateConfigVersion.cmake
#
# Linux and other ELF systems only.
set -euo pipefail

die() {
    echo "install.sh: $*" >&2
    exit 1
}

prefix=/usr/local
libdir=
includedir=
destdir=${DESTDIR:-}
from=
uninstall=false
while [ $# -gt 0 ]; do
    case "$1" in
    --prefix) prefix=${2:?--prefix needs a directory}; shift 2 ;;
    --prefix=*) prefix=${1#*=}; shift ;;
    --libdir) libdir=${2:?--libdir needs a directory}; shift 2 ;;
    --libdir=*) libdir=${1#*=}; shift ;;
    --includedir) includedir=${2:?--includedir needs a directory}; shift 2 ;;
    --includedir=*) includedir=${1#*=}; shift ;;
    --destdir) destdir=${2?--destdir needs a directory}; shift 2 ;;
    --destdir=*) destdir=${1#*=}; shift ;;
    --from) from=${2:?--from needs a directory}; shift 2 ;;
    --from=*) from=${1#*=}; shift ;;
    --uninstall) uninstall=true; shift ;;
    -h | --help) sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
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
    for f in "$libdir/libnnx_state.so" "$libdir/$soname" "$libdir/$real" \
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
[ -f "$shared" ] && [ -f "$static" ] ||
    die "$shared or $static is missing: run 'cargo build --release' (or 'make install')"
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

install -d "$destdir$libdir" "$destdir$includedir" "$destdir$pc_dir" "$destdir$cmake_dir"
install -m 755 "$shared" "$destdir$libdir/$real"
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
echo "  $libdir/$real (soname $soname), $libdir/libnnx_state.a"
echo "  $includedir/nnx_state.h, $includedir/nnx_state.hpp"
echo "  $pc_dir/nnx_state.pc, $cmake_dir/nnx_stateConfig.cmake"
