#!/usr/bin/env bash
# mmbal's accelerator benchmarks in one command: one GPU (or TPU host), under 8 minutes.
#
#   benchmarks/accelerator.sh            # on the accelerator (JAX's default backend)
#   benchmarks/accelerator.sh --tiny     # CPU smoke test at tiny sizes (tests/test_benchmarks.py)
#   benchmarks/accelerator.sh --out DIR  # where the JSON goes (default benchmarks/results)
#   benchmarks/accelerator.sh --stages methods_f32,vlm_large   # some stages only
#   PYTHON=/path/to/python benchmarks/accelerator.sh   # the interpreter (default python3)
#   benchmarks/accelerator.sh --official DIR   # also mmbal against the official PyTorch code
#       (vs_official.py on the same device, up to 2 more minutes per method), for each clone
#       DIR holds under its GitHub name: OGM-GE_CVPR2022, Pytorch-PCGrad, MMPareto_ICML2024
#
# Stages, each capped (seconds) so the whole stays under 8 minutes; a stage past its cap or
# failing is recorded as such and the next one runs:
#   methods_f32   OGM-GE, PCGrad and MMPareto's train steps and their plain counterparts: a
#                 ResNet-18 per modality at CREMA-D's shapes (spectrogram 188 x 257, frame
#                 224 x 224), batch 64, float32 (method_overhead.py --encoder resnet18),
#                 compiled one at a time (see below)                                         (200)
#   methods_bf16  PCGrad the same in bfloat16 (model.dtype)                                  (80)
#   objectives    structured and overlapping per-objective gradients against the plain step,
#                 M = 2, 3, 6 (step_overhead.py, MLP encoders 512 -> 1024 -> 256, batch 1024) (60)
#   vlm_large     the TinyVLM step at --large size, f32 and bf16, with model FLOPs utilisation
#                 (vlm_step.py)                                                               (60)
#   pipeline      frames decoded per second by the grain pipeline, 1-16 read threads and
#                 2-8 worker processes (pipeline.py)                                          (50)
# Writes DIR/accelerator/<stage>.json and DIR/accelerator_<device>.json (all stages, the
# device named, each stage's status and seconds). Put the GPU rows in docs/benchmarks.md.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
py=${PYTHON:-python3}

tiny=0 out=benchmarks/results official="" only=methods_f32,methods_bf16,objectives,vlm_large,pipeline
while [[ $# -gt 0 ]]; do
  case $1 in
    --tiny) tiny=1 ;;
    --out) out=$2; shift ;;
    --stages) only=$2; shift ;;
    --official) official=$2; shift ;;
    *) echo "usage: $0 [--tiny] [--out DIR] [--stages a,b,...] [--official DIR]" >&2; exit 2 ;;
  esac
  shift
done
all_stages=methods_f32,methods_bf16,objectives,vlm_large,pipeline
for name in ${only//,/ }; do
  [[ ",$all_stages," == *",$name,"* ]] || { echo "--stages: unknown stage '$name' (expected some of $all_stages)" >&2; exit 2; }
done
stages="$out/accelerator"
mkdir -p "$stages"
if [[ -n $official ]]; then
  [[ -d $official ]] || { echo "--official: $official is not a folder" >&2; exit 2; }
  only="$only,vs_official_ogm_ge,vs_official_pcgrad,vs_official_mmpareto"
fi
for name in ${only//,/ }; do rm -f "$stages/$name".{json,log,status}; done   # the others' stay

if [[ $tiny == 1 ]]; then   # the same commands at sizes a CPU runs in seconds
  device=cpu
  methods=(--encoder cnn --image-size 16 --batch 4 --rounds 1 --steps 1 --quick)
  methods_f32=(--variants ogm_ge)
  methods_bf16=(--variants plain)
  objectives=(--batch 16 --in-dim 8 --hidden-dim 8 --feature-dim 8 --rounds 1 --steps 1
              --modalities 2)
  vlm=(--batch 4 --image-size 8 --patch-size 4 --dim 16 --depth 1 --rounds 1 --steps 1
       --variants ce_bf16)
  pipeline=(--quick --threads 1 --workers 1)
  vs=(--quick --no-memory)
else
  device=gpu
  # One compile at a time: on the H200 the plain ResNet step compiles in 13 s alone, but five
  # variants compiled 8 at a time had finished two after 115 s (XLA's convolution autotuning
  # times kernels on the one GPU, and concurrent tuners only slow each other down).
  methods=(--encoder resnet18 --batch 64 --rounds 5 --steps 5 --compile-threads 1)
  # The variants share every convolution: XLA's GPU autotuning results are kept on disk so the
  # second variant does not tune them again (untested on a GPU yet; see docs/benchmarks.md).
  flag="--xla_gpu_per_fusion_autotune_cache_dir=$stages/autotune"
  if XLA_FLAGS="${XLA_FLAGS:-} $flag" "${PYTHON:-python3}" -c "import jax; jax.devices()" >/dev/null 2>&1; then
    export XLA_FLAGS="${XLA_FLAGS:-} $flag"
  else
    echo "this XLA does not take $flag; running without it" >&2
  fi
  # Sized by the H200 runs (2026-12-04): one at a time the ResNet steps compiled in 7-21 s
  # (OGM-GE 65 s, before its noise took one draw per leaf shape); methods_f32 took 161 s.
  # The whole sweep is `method_overhead.py --device gpu --encoder resnet18 --batch 64`.
  methods_f32=(--variants ogm_ge pcgrad mmpareto)
  methods_bf16=(--variants pcgrad)
  objectives=(--batch 1024 --in-dim 512 --hidden-dim 1024 --feature-dim 256 --rounds 5 --steps 10
              --variants plain structured/vmap overlap/vmap)
  vlm=(--large --rounds 5 --steps 10 --variants ce ce_bf16)
  pipeline=(--threads 1 4 16 --workers 2 8 --batches 32)
  vs=(--rounds 5 --steps 5 --no-memory)
fi

# run NAME CAP_SECONDS COMMAND...: the stage's output in $stages/NAME.log, its status beside.
run() {
  local name=$1 cap=$2 start=$SECONDS status
  shift 2
  [[ ",$only," == *",$name,"* ]] || return 0
  echo "== $name (cap ${cap}s)" >&2
  timeout --kill-after=10 "$cap" "$@" >"$stages/$name.log" 2>&1
  case $? in
    0) status=ok ;;
    124|137) status="timed out after ${cap}s" ;;
    *) status="failed (see $name.log)" ;;
  esac
  printf '%s\t%s\n' "$status" "$((SECONDS - start))" >"$stages/$name.status"
  echo "   $status, $((SECONDS - start)) s" >&2
}

run methods_f32 200 "$py" benchmarks/method_overhead.py --device $device --modalities 2 \
    "${methods[@]}" "${methods_f32[@]}" --dtype float32 --out "$stages/methods_f32.json"
run methods_bf16 80 "$py" benchmarks/method_overhead.py --device $device --modalities 2 \
    "${methods[@]}" "${methods_bf16[@]}" --dtype bfloat16 --out "$stages/methods_bf16.json"
run objectives 60 "$py" benchmarks/step_overhead.py --device $device "${objectives[@]}" \
    --out "$stages/objectives.json"
run vlm_large 60 "$py" benchmarks/vlm_step.py --device $device "${vlm[@]}" \
    --out "$stages/vlm_large.json"
run pipeline 50 "$py" benchmarks/pipeline.py "${pipeline[@]}" --out "$stages/pipeline.json"
if [[ -n $official ]]; then
  for pair in ogm_ge:OGM-GE_CVPR2022 pcgrad:Pytorch-PCGrad mmpareto:MMPareto_ICML2024; do
    method=${pair%%:*} clone="$official/${pair#*:}"
    if [[ -d $clone ]]; then
      run "vs_official_$method" 120 "$py" benchmarks/vs_official.py --method "$method" \
          --official-dir "$clone" --device $device "${vs[@]}" --out "$stages/vs_official_$method.json"
    else
      echo "--official: no $clone; vs_official_$method skipped" >&2
    fi
  done
fi

"$py" - "$stages" "$out" <<'EOF'
"""Merges the stages' JSON into accelerator_<device>.json, naming the device."""
import json, pathlib, sys
stages, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
merged, device = {}, None
for status in sorted(stages.glob("*.status")):
  state, seconds = status.read_text().strip().split("\t")
  result = stages / f"{status.stem}.json"
  merged[status.stem] = dict(status=state, seconds=int(seconds),
                             result=json.loads(result.read_text()) if result.exists() else None)
  if status.stem != "pipeline":   # host work: it always reports the CPU
    device = device or (merged[status.stem]["result"] or {}).get("device")
sys.path.insert(0, "benchmarks")
from _timing import device_name
name = device_name(device) if device else "unknown"
path = out / f"accelerator_{name}.json"
path.write_text(json.dumps(dict(benchmark="accelerator", device=device, stages=merged), indent=2) + "\n")
print(f"wrote {path}: " + ", ".join(f"{k} {v['status']} ({v['seconds']} s)" for k, v in merged.items()))
sys.exit(0 if merged and all(v["status"] == "ok" for v in merged.values()) else 1)
EOF
