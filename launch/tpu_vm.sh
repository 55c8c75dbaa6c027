#!/usr/bin/env bash
# mmbal on a Cloud TPU VM (one host or a pod slice): the same command on every worker.
#
#   launch/tpu_vm.sh NAME ZONE [--create ACCELERATOR_TYPE [--version V]] [--data-dir DIR] [--] train args...
#   launch/tpu_vm.sh my-pod us-central2-b --create v4-32 -- --config configs/mfeat/joint.py --workdir /mnt/nfs/runs/j
#
# 1. --create: `gcloud compute tpus tpu-vm create` (runtime --version, default tpu-ubuntu2204-base).
# 2. Copies the checkout's files (git's tracked and untracked-not-ignored ones) to ~/mmbal on every
#    worker (`tpu-vm scp --recurse --worker=all`; files deleted here are not deleted there).
# 3. --data-dir: a TFDS data dir every worker sees (a shared mount); passed on as data.data_dir=DIR,
#    and the data set is prepared there once, on worker 0, before training starts. Without it
#    each worker prepares its own ~/tensorflow_datasets.
# 4. One `tpu-vm ssh --worker=all --command` runs on every worker: launch/setup_venv.sh tpu
#    (~/mmbal_venv, once), then `mmbal train --distributed ARGS` (jax.distributed.initialize()
#    finds the pod's workers itself). It runs in the foreground: start it inside tmux/screen.
# The workdir must be a path every worker sees (e.g. a Filestore NFS mount): all workers write
# their parts of the orbax checkpoints there. gs:// paths do not work (the trainer writes with
# pathlib). Rerunning the same command resumes from the workdir's last checkpoint.
# DRY_RUN=1 prints the gcloud commands instead of running them.
set -euo pipefail

usage() { sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
[[ $# -ge 2 && "$1" != -* && "$2" != -* ]] || usage
name=$1 zone=$2
shift 2
accelerator='' version=tpu-ubuntu2204-base data_dir=''
while [[ $# -gt 0 && "$1" != "--" ]]; do
  case "$1" in --create|--version|--data-dir) [[ $# -ge 2 ]] || usage ;; esac
  case "$1" in
    --create) accelerator=$2 ;;
    --version) version=$2 ;;
    --data-dir) data_dir=$2 ;;
    -h|--help) usage ;;
    *) break ;;   # the train args start here ("--" is optional)
  esac
  shift 2
done
[[ $# -gt 0 && "$1" == "--" ]] && shift
train_args=("$@")   # ${a[@]+"${a[@]}"} below: an empty array under set -u in bash 3.2 (macOS)
[[ -n "$data_dir" ]] && train_args=("data.data_dir=$data_dir" ${train_args[@]+"${train_args[@]}"})

# One word for a POSIX shell: bare when it is safe, else single-quoted.
quote() {
  if [[ "$1" =~ ^[A-Za-z0-9_./:=,@%+-]+$ ]]; then printf '%s' "$1"
  else printf "'%s'" "${1//\'/\'\\\'\'}"; fi
}
quote_all() {
  local sep='' word
  for word in "$@"; do printf '%s' "$sep"; quote "$word"; sep=' '; done
}
gcloud_run() {
  if [[ "${DRY_RUN:-0}" == 1 ]]; then quote_all gcloud "$@"; echo
  else echo "+ gcloud $*" >&2; gcloud "$@"; fi
}

tpu=(compute tpus tpu-vm)
if [[ -n "$accelerator" ]]; then
  gcloud_run "${tpu[@]}" create "$name" "--zone=$zone" "--accelerator-type=$accelerator" \
    "--version=$version"
fi

# Stage the checkout's files (not .git, runs/, venvs) in a folder named mmbal, then copy it.
repo=$(cd "$(dirname "$0")/.." && pwd)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir "$stage/mmbal"
if git -C "$repo" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  (cd "$repo" && git ls-files -z --cached --others --exclude-standard |
     xargs -0 sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh |
     tar --null -T - -cf -) | tar -xf - -C "$stage/mmbal"
else
  tar -C "$repo" --exclude=.git --exclude=runs --exclude=.venv --exclude=__pycache__ -cf - . |
    tar -xf - -C "$stage/mmbal"
fi
[[ "${DRY_RUN:-0}" == 1 ]] && echo "# staged $(find "$stage/mmbal" -type f | wc -l) files in $stage/mmbal (removed on exit)"
gcloud_run "${tpu[@]}" scp --recurse "$stage/mmbal" "$name:" "--zone=$zone" --worker=all

setup='cd ~/mmbal && bash launch/setup_venv.sh tpu >/dev/null'
python='~/mmbal_venv/bin/python'
if [[ -n "$data_dir" ]]; then
  gcloud_run "${tpu[@]}" ssh "$name" "--zone=$zone" --worker=0 \
    "--command=$setup && $python launch/prepare_data.py $(quote_all ${train_args[@]+"${train_args[@]}"})"
fi
gcloud_run "${tpu[@]}" ssh "$name" "--zone=$zone" --worker=all \
  "--command=$setup && $python -m mmbal.train.cli train --distributed $(quote_all ${train_args[@]+"${train_args[@]}"})"
