#!/usr/bin/env bash
# A virtual environment for mmbal on a worker: created once, next to the checkout, with the
# accelerator's jax.
#
#   launch/setup_venv.sh tpu     # mmbal + jax[tpu]      (TPU VM workers)
#   launch/setup_venv.sh cuda    # mmbal + jax[cuda12]   (NVIDIA GPUs; CUDA comes as pip wheels)
#   launch/setup_venv.sh cpu     # mmbal + jax           (CPU only)
#
# The venv is <checkout>_venv beside the checkout (~/mmbal -> ~/mmbal_venv), so copying the
# checkout again keeps it; MMBAL_VENV=DIR puts it elsewhere. It needs Python >= 3.11 ($PYTHON,
# else the newest python3.1x found); where there is none and sudo needs no password (TPU VMs),
# python3.11 is installed with apt. Running it again with the same argument, requirements.txt and
# setup.py does nothing; otherwise it reinstalls into the same venv. The last line printed is the
# venv's python.
set -euo pipefail

usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
[[ $# -eq 1 ]] || usage
case "$1" in
  tpu) jax='jax[tpu]' ;;
  cuda) jax='jax[cuda12]' ;;
  cpu) jax='jax' ;;
  *) usage ;;
esac
kind=$1
repo=$(cd "$(dirname "$0")/.." && pwd)
venv=${MMBAL_VENV:-${repo}_venv}

say() { echo "setup_venv: $*" >&2; }
run() { echo "+ $*" >&2; "$@"; }

stamp="$kind $(cat "$repo/requirements.txt" "$repo/setup.py" | cksum)"
if [[ -x "$venv/bin/python" && -f "$venv/.mmbal-setup" && "$(cat "$venv/.mmbal-setup")" == "$stamp" ]]; then
  say "$venv is up to date ($kind)"
  echo "$venv/bin/python"
  exit 0
fi

recent_python() {   # the first interpreter >= 3.11
  local candidate
  for candidate in ${PYTHON:-} python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null &&
       "$candidate" -c 'import sys, venv; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      command -v "$candidate"
      return 0
    fi
  done
  return 1
}

if [[ ! -x "$venv/bin/python" ]]; then
  if ! python=$(recent_python); then
    if command -v apt-get >/dev/null && sudo -n true 2>/dev/null; then
      say "no Python >= 3.11 with venv found; installing python3.11 with apt"
      run sudo apt-get -qq update
      run sudo env DEBIAN_FRONTEND=noninteractive apt-get -qq install -y python3.11 python3.11-venv
      python=$(recent_python)
    else
      say "error: mmbal needs Python >= 3.11 with the venv module; set PYTHON=/path/to/python3.11"
      exit 1
    fi
  fi
  say "creating $venv with $python"
  run "$python" -m venv "$venv"
fi
run "$venv/bin/python" -m pip install -q --upgrade pip
say "installing mmbal ($repo, editable) and $jax"
run "$venv/bin/python" -m pip install -q -e "$repo" "$jax"
echo "$stamp" > "$venv/.mmbal-setup"
"$venv/bin/python" -c 'import jax, mmbal; print("setup_venv: jax", jax.__version__)' >&2
echo "$venv/bin/python"
