#!/usr/bin/env bash
# Sets up everything caffezoo needs on a fresh Debian 12 / Python 3.11 machine, idempotently:
#   1. the Debian packages real Caffe builds against,
#   2. a venv with the pinned Python packages (pyproject.toml + scripts/constraints.txt),
#   3. real Caffe (pycaffe and the `caffe` tool) from the brocolli-caffe sdist,
#   4. `.venv` in this checkout: a small venv of its own that sees the shared venv's packages and
#      has this checkout installed editable (the `caffezoo` console script), so each clone runs
#      its own code.
# The shared venv and the Caffe build are cached under $CAFFEZOO_CACHE (default
# ~/.cache/caffezoo), keyed by a hash of the recipe, so a repeat run takes seconds and a recipe
# change rebuilds. Prints the checkout's venv path on its last line.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${CAFFEZOO_CACHE:-$HOME/.cache/caffezoo}
python=${CAFFEZOO_PYTHON:-python3.11}
mkdir -p "$cache"
log() { echo "[setup] $*" >&2; }

apt_packages=(build-essential python3-dev libboost-system-dev libboost-filesystem-dev
  libboost-thread-dev libboost-regex-dev libboost-python-dev libprotobuf-dev protobuf-compiler
  libgoogle-glog-dev libgflags-dev libhdf5-dev libopenblas-dev)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi

# Bump when the venv install steps below change (pins and constraints are hashed anyway).
venv_recipe=1
py_tag=$("$python" -c 'import sys; print("py%d%d" % sys.version_info[:2])')
caffe_key=$(sha256sum < "$repo/scripts/build_caffe.sh" | cut -c1-12)
venv_key=$( (echo "$venv_recipe"; cat "$repo/scripts/constraints.txt"; \
  "$python" "$repo/scripts/pins.py" "$repo/pyproject.toml") | sha256sum | cut -c1-12)
venv="$cache/venv-$py_tag-$venv_key-$caffe_key"
caffe="$cache/caffe-$py_tag-$caffe_key"
local_venv="$repo/.venv"
# A checkout already wired to a complete venv of this very recipe keeps it, even when
# CAFFEZOO_CACHE now names another folder: nothing is rebuilt for a changed variable alone.
wired=$(cat "$local_venv/.shared-venv" 2>/dev/null || true)
if [ -n "$wired" ] && [ "$wired" != "$venv" ] && [ "$(basename "$wired")" = "$(basename "$venv")" ] \
    && [ -e "$wired/.complete" ]; then
  log "using $wired (set up under another CAFFEZOO_CACHE)"
  venv=$wired
  caffe="$(dirname "$wired")/caffe-$py_tag-$caffe_key"
fi

if [ ! -e "$venv/.complete" ]; then
  log "creating venv $venv"
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip setuptools wheel >&2
  # shellcheck disable=SC2046
  "$venv/bin/pip" install -q -c "$repo/scripts/constraints.txt" \
    $("$python" "$repo/scripts/pins.py" "$repo/pyproject.toml" deps) >&2
  # shellcheck disable=SC2046
  "$venv/bin/pip" install -q --no-deps $("$python" "$repo/scripts/pins.py" "$repo/pyproject.toml" no-deps) >&2
fi

if [ ! -x "$caffe/.temp_release/tools/caffe.bin" ]; then
  log "building real Caffe into $caffe (about 4-6 minutes on 2 cores)"
  "$repo/scripts/build_caffe.sh" "$caffe" "$venv/bin/python" >&2
fi

if [ ! -e "$venv/.complete" ]; then
  site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  echo "$caffe/python" > "$site/caffe-build.pth"
  ln -sfn "$caffe/.temp_release/tools/caffe.bin" "$venv/bin/caffe"
  touch "$venv/.complete"
  # A new recipe supersedes the old builds (about 3 GB a venv): remove them.
  for old in "$cache"/venv-* "$cache"/caffe-*; do
    [ "$old" = "$venv" ] || [ "$old" = "$caffe" ] || rm -rf "$old"
  done
fi

# This checkout's own venv: it sees the shared venv's packages through a .pth file and has this
# checkout installed editable, with pip's console-script launcher for `caffezoo` (a real entry
# point: worker processes that re-import the main module do not run the CLI again).
if [ "$(cat "$local_venv/.shared-venv" 2>/dev/null || true)" != "$venv" ]; then
  log "wiring $local_venv to $venv"
  rm -rf "$local_venv"  # a link (older set-ups) or a venv wired to a superseded build
  "$venv/bin/python" -m venv --without-pip "$local_venv"
  shared_site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  local_site=$("$local_venv/bin/python" -c \
    'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  # addsitedir (not a plain path line) so that the shared venv's own .pth files (pycaffe) apply
  echo "import site; site.addsitedir('$shared_site')" > "$local_site/caffezoo-shared-venv.pth"
  PYTHONWARNINGS=ignore "$venv/bin/python" -m pip --python "$local_venv/bin/python" install -q --no-deps \
    --no-build-isolation -e "$repo" >&2
  ln -sfn "$venv/bin/caffe" "$local_venv/bin/caffe"
  echo "$venv" > "$local_venv/.shared-venv"
fi
echo "$local_venv"
