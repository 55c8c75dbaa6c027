#!/usr/bin/env bash
# N mmbal processes on this machine, joined through JAX's distributed runtime over localhost
# (CPU collectives via gloo): the same code path as a TPU pod or a GPU cluster.
#
#   launch/local_multiprocess.sh N [--devices-per-process D] [--port P] -- train args...
#   launch/local_multiprocess.sh 2 --devices-per-process 4 -- --config configs/mfeat/joint.py --workdir /tmp/mp
#
# Each process gets D simulated CPU devices (default 1) and logs to stderr with a [i] prefix
# (gloo's one 'Rank N is connected to M peer ranks' line per device pair is dropped).
# SIGTERM/SIGINT to this script is forwarded to every process (a preemption: they agree on a
# step, checkpoint and exit 0). If one process fails, the others are stopped and its exit
# status is returned.
set -euo pipefail

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
[[ $# -ge 1 && "$1" =~ ^[0-9]+$ && "$1" -ge 1 ]] || usage
num=$1; shift
devices=1
port=$(( 20000 + RANDOM % 20000 ))
while [[ $# -gt 0 && "$1" != "--" ]]; do
  case "$1" in
    --devices-per-process) devices=$2; shift 2 ;;
    --port) port=$2; shift 2 ;;
    -h|--help) usage ;;
    *) break ;;   # the train args start here ("--" is optional)
  esac
done
[[ $# -gt 0 && "$1" == "--" ]] && shift
python=${PYTHON:-python3}

pids=()
stop_all() { for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done; }
trap stop_all TERM INT

for ((i = 0; i < num; i++)); do
  JAX_PLATFORMS=cpu JAX_NUM_CPU_DEVICES=$devices \
    "$python" -m mmbal.train.cli train --distributed --coordinator "127.0.0.1:$port" \
      --num-processes "$num" --process-id "$i" "$@" \
      > >(sed -u "s/^/[$i] /") 2> >(sed -u "/^\[Gloo\] Rank [0-9]* is connected to/d; s/^/[$i] /" >&2) &
  pids+=($!)
done

# Poll rather than `wait -n`: a forwarded signal must not look like a process exiting.
status=0
alive=("${pids[@]}")
while (( ${#alive[@]} > 0 )); do
  still=()
  for pid in "${alive[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then still+=("$pid"); continue; fi
    set +e; wait "$pid"; code=$?; set -e
    if (( code != 0 && status == 0 )); then
      status=$code
      echo "local_multiprocess: process $pid exited with status $code; stopping the others" >&2
      stop_all
    fi
  done
  alive=("${still[@]+"${still[@]}"}")
  (( ${#alive[@]} > 0 )) && sleep 0.5
done
exit "$status"
