#!/usr/bin/env bash
# Builds real Caffe (CPU; libcaffe, pycaffe and the `caffe` tool) from the brocolli-caffe 9.0.2
# sdist into $1, using the interpreter $2 (its numpy 2.x headers give a module that also runs on
# numpy 1.26). Debian packages must already be installed (scripts/setup.sh does that).
# The build happens in a temporary folder and is moved into place only when it succeeded.
set -euo pipefail
dest=$1
python=$2
sdist_version=9.0.2
sdist_sha256=c6410cc60bdd6db685d441b66be7df05410f8850ac88d6b75d48ef9b2315c08a

work=$(mktemp -d "${dest}.tmp.XXXXXX")
trap 'rm -rf "$work"' EXIT

"$python" -m pip download -q --no-deps --no-binary :all: -d "$work/dl" "brocolli-caffe==$sdist_version"
archive=$(ls "$work"/dl/brocolli*caffe-"$sdist_version".tar.gz)
echo "$sdist_sha256  $archive" | sha256sum -c --quiet -
tar -xzf "$archive" -C "$work"
src=$(ls -d "$work"/brocolli*caffe-"$sdist_version")

# The sdist ships generated protobuf files older than the protoc here (and a .git folder):
# remove them so make regenerates them.
rm -rf "$src/.git" "$src/include/caffe/proto/caffe.pb.h" "$src/src/caffe/proto/caffe.pb.cc" \
       "$src/python/caffe/proto/caffe_pb2.py"

py_include=$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
py_libdir=$("$python" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')
py_shared=$("$python" -c 'import sysconfig; print(sysconfig.get_config_var("Py_ENABLE_SHARED") or 0)')
py_ver=$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
np_include=$("$python" -c 'import numpy; print(numpy.get_include())')
boost_python="boost_python${py_ver/./}"

cat > "$src/Makefile.config" <<CFG
CPU_ONLY := 1
USE_OPENCV := 0
USE_LEVELDB := 0
USE_LMDB := 0
BLAS := open
PYTHON_INCLUDE := $py_include $np_include
PYTHON_LIB := $py_libdir
PYTHON_LIBRARIES := $boost_python python$py_ver
LINKFLAGS := -Wl,-rpath,$py_libdir
INCLUDE_DIRS := \$(PYTHON_INCLUDE) /usr/local/include /usr/include/hdf5/serial
LIBRARY_DIRS := \$(PYTHON_LIB) /usr/local/lib /usr/lib /usr/lib/x86_64-linux-gnu/hdf5/serial
Q ?= @
CFG
# The Python layer needs the interpreter's shared libpython.
[ "$py_shared" = 1 ] && echo "WITH_PYTHON_LAYER := 1" >> "$src/Makefile.config"

make -C "$src" -j"$(nproc)" all pycaffe > "$work/build.log" 2>&1 || { tail -40 "$work/build.log"; exit 1; }
# The fork's Makefile builds into .temp_release while _caffe.so looks in build/lib.
ln -sfn .temp_release "$src/build"
rm -rf "$dest"
mv "$src" "$dest"
echo "caffe built in $dest"
