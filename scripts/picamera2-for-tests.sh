#!/usr/bin/env bash
# Makes picamera2 importable in the project's venv on a machine without a Raspberry Pi, for the
# camera contract tests (tests/contract/test_picamera2_glue.py). Never run this on a unit.
#
#   scripts/picamera2-for-tests.sh VENV
#
# picamera2 from PyPI (the `pi-contract` extra) builds python-prctl, which needs libcap-dev, and
# imports libcamera's Python bindings, which Debian 12 ships only in bookworm-backports
# (python3-libcamera 0.3). Those bindings are built for the system's Python 3.11; they are linked
# into VENV only if VENV runs a Python 3.11 too. Prints "picamera2: ready" when the import works.
set -euo pipefail
VENV=${1:?usage: $0 VENV}
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
. /etc/os-release
if [ "${VERSION_CODENAME:-}" != "bookworm" ]; then
  echo "picamera2: not set up (the recipe is for Debian 12 bookworm, this is ${PRETTY_NAME:-unknown})"
  exit 0
fi
# libasound2-data: /usr/share/alsa, which tests/unit/test_alsa_input.py points PyPI av's alsa-lib at.
need=""
for pkg in libcap-dev libasound2-data; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need="$need $pkg"
done
if ! dpkg-query -W -f='${Status}' python3-libcamera 2>/dev/null | grep -q "install ok installed"; then
  list=/etc/apt/sources.list.d/bwc-bookworm-backports.list
  if [ ! -f "$list" ]; then
    # The backports suite from the same archive this machine's apt already uses (its first
    # bookworm source), so nothing here names or assumes a mirror.
    mirror=$(bash scripts/apt-mirror.sh || true)
    [ -n "$mirror" ] || { echo "picamera2: not set up (no apt source to add bookworm-backports to)"; exit 0; }
    echo "deb $mirror bookworm-backports main" | $SUDO tee "$list" >/dev/null
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends \
    -t bookworm-backports python3-libcamera $need
elif [ -n "$need" ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends $need
fi
"$VENV/bin/python" -m pip install --quiet -e '.[pi-contract]'
init=$(dpkg -L python3-libcamera | grep '/libcamera/__init__.py$' | head -n 1)
site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
ver=$("$VENV/bin/python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
if [[ "$init" != */python"$ver"/* ]]; then
  echo "picamera2: not set up (Debian's libcamera bindings are for another Python than $VENV's)"
  exit 0
fi
ln -sfn "$(dirname "$init")" "$site/libcamera"
# picamera2 imports pykms (kms++'s DRM preview bindings) too; the contract tests provide a
# stand-in for that one (tests/contract/shims), so the check here does the same.
PYTHONPATH=tests/contract/shims "$VENV/bin/python" -c 'import picamera2.encoders' 2>/dev/null \
  && echo "picamera2: ready" || { echo "picamera2: import still fails"; exit 1; }
