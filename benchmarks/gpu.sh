#!/usr/bin/env bash
# The GPU check: everything in this repo that needs a GPU, in one command that ends well inside
# 9 minutes (DEADLINE) and prints a short table last. Run it to check your own GPU.
#
#   bash benchmarks/gpu.sh DATA OUTDIR [--dry-run | --table]
#
# DATA    CIFAR-10: an ImageFolder tree (train/<class>/, test/<class>/, e.g. this project's
#         cifar10-jpg.tar.gz unpacked), that .tar.gz itself (unpacked into a temporary folder),
#         or a folder for torchvision's CIFAR-10 (downloaded there if missing).
# OUTDIR  where the results go, at most 8 files: summary.md (the table printed last), tests.txt,
#         bench.txt, run_all.txt, gpu-short.tar.gz (the runs' result.json, log.jsonl and commands;
#         no checkpoints), carry-on.tar.gz (only the checkpoints a later slot needs: the teacher's
#         model.pt, the paused runs' last.pt), ablation-gpu-short.md and .png.
#
# Steps, in this order, each with its own time limit:
#   1. the GPU tests: pytest -m gpu
#   2. bench.py on CIFAR-10: resnet20 in fp32, --amp, --amp --compile and --compile reduce-overhead
#      (CUDA graphs), resnet56 in fp32 and --amp: (a) the real loop, (b) the model step alone,
#      (c) ImageFolder + PIL + DataLoader with a worker per core
#   3. the 224-px path: a folder of 256-px images made from CIFAR-10 (benchmarks/upscale.py),
#      bench.py with resnet50 --amp, and one epoch of baseline.py on it
#   4. runs at a time: benchmarks/jobs.py, the images per second of 1, 2, 4 and 8
#      ResNet-20 runs sharing the GPU; the best becomes run_all.sh's JOBS below
#   5. run_all.sh gpu-short in the time left (BUDGET), when that is at least 150 s: CONTINUE=DIR
#      (the OUTDIR of an earlier check) skips the runs finished there and resumes the paused ones
#
# --table: step 5 alone, for all of DEADLINE: the full gpu-short table is some 35 minutes of one
# H200 (an estimate, docs/results.md), so it is filled over slots, each carrying on the last:
#   DEADLINE=540 bash benchmarks/gpu.sh DATA out1 --table
#   DEADLINE=540 CONTINUE=out1 bash benchmarks/gpu.sh DATA out2 --table     # and so on
# --dry-run: the same steps on the CPU at tiny sizes, in two to three minutes (CI runs it): it proves
# that every step works and measures nothing. Environment: DEADLINE (seconds for the whole check,
# default 510), PYTHON, EXTRA (flags for every training command, e.g. --cache-dir DIR).
set -uo pipefail
[[ $# -ge 2 && $# -le 3 ]] || { echo "usage: bash benchmarks/gpu.sh DATA OUTDIR [--dry-run | --table]" >&2; exit 2; }
absolute() { if [[ $1 == /* ]]; then echo "$1"; else echo "$PWD/$1"; fi; }
DATA=$(absolute "$1") OUTDIR=$(absolute "$2") MODE=${3:-} CONTINUE=${CONTINUE:+$(absolute "$CONTINUE")}
[[ -z $MODE || $MODE == --dry-run || $MODE == --table ]] || { echo "gpu.sh: unknown option $MODE (--dry-run or --table)" >&2; exit 2; }
[[ -z $CONTINUE || -f $CONTINUE/gpu-short.tar.gz ]] ||
  { echo "gpu.sh: CONTINUE=$CONTINUE holds no gpu-short.tar.gz: give the OUTDIR of an earlier check" >&2; exit 2; }
DRY=${MODE/--table/}
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$(command -v python3 || command -v python)}
DEADLINE=${DEADLINE:-510}
EXTRA=${EXTRA:-}
START=$SECONDS
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

if [[ $DATA == *.tar.gz || $DATA == *.tgz ]]; then  # the project's JPEG copy: unpack it, find the tree
  tar xzf "$DATA" -C "$WORK" || { echo "gpu.sh: cannot unpack $DATA" >&2; exit 2; }
  DATA=$(dirname "$(find "$WORK" -maxdepth 3 -type d -name train | head -n 1)")
fi

if [[ $DRY == --dry-run ]]; then  # tiny sizes on the CPU: every step runs, nothing is measured
  DEVICE="--device cpu"
  SIZES="--batch-size 8 --subset 32 --test-subset 32"
  BENCH="--rounds 1 --steps 2 --workers 0"
  BENCHES=("resnet20|" "resnet20|--amp" "resnet20|--amp --compile")
  BIG="--per-class 3 --size 80"; BIG_FLAGS="--arch resnet18 --image-size 72 --batch-size 6"
  JOBS_FLAGS="--jobs 1 2 --seconds 2"
  RUN_ALL=(ROWS="baseline mixup distill" SEEDS=1 EXTRA="--device cpu --epochs 1 --subset 32 --test-subset 32 --batch-size 8 $EXTRA")
else
  DEVICE="--device cuda"
  SIZES="--batch-size 128"
  BENCH="--rounds 5 --steps 20"
  BENCHES=("resnet20|" "resnet20|--amp" "resnet20|--amp --compile" "resnet20|--compile reduce-overhead"
           "resnet56|" "resnet56|--amp")
  BIG="--per-class 200 --size 256"; BIG_FLAGS="--arch resnet50 --image-size 224 --batch-size 128"
  JOBS_FLAGS="--jobs 1 2 4 8 --seconds 8"
  RUN_ALL=(EXTRA="$EXTRA")
fi

ROWS_MD=()
row() { ROWS_MD+=("| $1 | $2 |"); echo "gpu.sh: $1: $2"; }
left() { echo $(( DEADLINE - (SECONDS - START) )); }
limit() {  # limit SECONDS: a step's time limit, cut so that the check ends by DEADLINE (a minute kept back)
  local l=$(( $(left) - 60 )); (( l > $1 )) && l=$1; (( l < 5 )) && l=5; echo $l
}
# bench.py's output as one table cell: the three rates, the two ratios and the operations' ratio
bench_cell() {
  awk '/^\(a\)/ {a=$(NF-1)} /^\(b\)/ {b=$(NF-1)} /^\(c\)/ {c=$(NF-1)} /^a\/b =/ {ab=$3; ac=$6}
       /^operations per step/ {ops=$NF}
       END {if (ab == "") print "failed (see bench.txt)"; else printf "a %s, b %s, c %s img/s; a/b %s, a/c %s%s\n", a, b, c, ab, ac, (ops == "" ? "" : "; ops b/a " ops)}'
}

GPU=$($PYTHON -c "import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')")
VERSIONS=$($PYTHON -c "import torch, torchvision; print(f'torch {torch.__version__}, torchvision {torchvision.__version__}')")
echo "gpu.sh: $GPU; $VERSIONS; $(nproc) CPU cores; data $DATA; results in $OUTDIR"

gpu_tests() {  # 1. the GPU tests
  local t=$SECONDS
  CIFAR_DIR=$DATA timeout "$(limit 180)" $PYTHON -m pytest -q -m gpu -p no:cacheprovider tests > "$OUTDIR/tests.txt" 2>&1
  row "GPU tests" "$(tail -n 1 "$OUTDIR/tests.txt" | tr -d '=') ($((SECONDS - t)) s)"
}

benches() {  # 2. bench.py on CIFAR-10
  local arch mode
  for bench in "${BENCHES[@]}"; do
    arch=${bench%%|*} mode=${bench#*|}
    # shellcheck disable=SC2086
    command=($PYTHON bench.py --data "$DATA" --arch $arch $SIZES $mode $BENCH $DEVICE $EXTRA)
    echo "\$ ${command[*]}" >> "$OUTDIR/bench.txt"
    timeout "$(limit 120)" "${command[@]}" > "$WORK/bench.out" 2>&1
    cat "$WORK/bench.out" >> "$OUTDIR/bench.txt"
    row "bench $arch ${mode:-fp32}" "$(bench_cell < "$WORK/bench.out")"
  done
}

big_images() {  # 3. the 224-px path
  # shellcheck disable=SC2086
  $PYTHON benchmarks/upscale.py "$DATA" "$WORK/big" $BIG >> "$OUTDIR/bench.txt" 2>&1
  # shellcheck disable=SC2086
  command=($PYTHON bench.py --data "$WORK/big" $BIG_FLAGS --amp $BENCH $DEVICE $EXTRA)
  echo "\$ ${command[*]}" >> "$OUTDIR/bench.txt"
  timeout "$(limit 120)" "${command[@]}" > "$WORK/bench.out" 2>&1
  cat "$WORK/bench.out" >> "$OUTDIR/bench.txt"
  row "bench 224 px ${BIG_FLAGS%% --image*} --amp" "$(bench_cell < "$WORK/bench.out")"
  # shellcheck disable=SC2086
  command=($PYTHON baseline.py --data "$WORK/big" $BIG_FLAGS --amp --epochs 1 --out "$WORK/big-run" $DEVICE $EXTRA)
  echo "\$ ${command[*]}" >> "$OUTDIR/bench.txt"
  timeout "$(limit 120)" "${command[@]}" >> "$OUTDIR/bench.txt" 2>&1
  row "one epoch at 224 px" "$(tail -n 1 "$OUTDIR/bench.txt")"
}

runs_at_a_time() {  # 4. runs at a time: sets JOBS
  # shellcheck disable=SC2086
  command=($PYTHON benchmarks/jobs.py $JOBS_FLAGS -- --data "$DATA" --arch resnet20 $SIZES --amp $DEVICE $EXTRA)
  echo "\$ ${command[*]}" >> "$OUTDIR/bench.txt"
  timeout "$(limit 150)" "${command[@]}" > "$WORK/jobs.out" 2>&1
  cat "$WORK/jobs.out" >> "$OUTDIR/bench.txt"
  JOBS=$(sed -n 's/^JOBS=\([0-9]*\):.*/\1/p' "$WORK/jobs.out")
  row "ResNet-20 --amp runs at a time" "$(grep 'at a time:' "$WORK/jobs.out" | awk '{printf "%s%s: %s img/s", sep, $1, $5; sep="; "}') (JOBS=${JOBS:-?})"
}

gpu_short() {  # 5. run_all.sh gpu-short in the time left
  RUNS="$WORK/runs/gpu-short"
  mkdir -p "$RUNS"
  for earlier in ${CONTINUE:+"$CONTINUE"/gpu-short.tar.gz "$CONTINUE"/carry-on.tar.gz}; do
    [[ ! -f $earlier ]] || tar xzf "$earlier" -C "$RUNS" || { echo "gpu.sh: cannot unpack $earlier" >&2; exit 2; }
  done
  budget=$(( $(left) - 30 )) least=150  # less than one run's length would finish nothing
  [[ $MODE != --table ]] || least=60
  if (( budget >= least )); then
    t=$SECONDS
    env DATA="$DATA" OUT="$RUNS" BUDGET=$budget PYTHON="$PYTHON" ${JOBS:+JOBS=$JOBS} "${RUN_ALL[@]}" \
      bash run_all.sh gpu-short > "$OUTDIR/run_all.txt" 2>&1
    finished=$(find "$RUNS" -path '*/s*/result.json' | grep -vc /teacher/)
    runs=$(grep -c '^row ' "$RUNS/rows.txt" 2>/dev/null); seeds=$(sed -n 's/^seeds //p' "$RUNS/rows.txt")
    row "run_all.sh gpu-short" "$finished of $((runs * seeds)) runs finished, $((SECONDS - t)) s of a ${budget}-s budget (JOBS=${JOBS:-default})$([[ -f $RUNS/ablation-gpu-short.md ]] && echo "; table: ablation-gpu-short.md")"
    (cd "$RUNS" && find . \( -name result.json -o -name log.jsonl -o -name '*.command' -o -name '*.log' -o -name rows.txt \) -print0 |
      tar czf "$OUTDIR/gpu-short.tar.gz" --null -T -)
    (cd "$RUNS" && { [[ ! -f teacher/s0/model.pt ]] || echo teacher/s0/model.pt
       for run in */s*/; do [[ ! -f $run/last.pt || -f $run/result.json ]] || echo "${run}last.pt"; done; } > "$WORK/carry"
     [[ ! -s $WORK/carry ]] || tar czf "$OUTDIR/carry-on.tar.gz" -T "$WORK/carry")
    cp "$RUNS"/ablation-gpu-short.* "$OUTDIR/" 2>/dev/null
  elif [[ $MODE == --table ]]; then
    row "run_all.sh gpu-short" "not started: ${budget}s left of DEADLINE=$DEADLINE"
  else  # the check's steps took the time: the table has its own slots
    row "run_all.sh gpu-short" "skipped: ${budget}s left of DEADLINE=$DEADLINE; the table: gpu.sh DATA OUTDIR --table"
  fi
}

if [[ $MODE != --table ]]; then : > "$OUTDIR/bench.txt"; gpu_tests; benches; big_images; runs_at_a_time; fi
gpu_short

{
  echo "# GPU check: $GPU, $VERSIONS, $(date -u +%Y-%m-%d)${DRY:+ (dry run on the CPU: nothing measured)}"
  echo
  echo "Command: \`${CONTINUE:+CONTINUE=$CONTINUE }DEADLINE=$DEADLINE bash benchmarks/gpu.sh $1 OUTDIR${MODE:+ $MODE}\`, $((SECONDS - START)) s in all. Details: $([[ $MODE == --table ]] || echo 'tests.txt, bench.txt, ')run_all.txt."
  echo
  echo "| step | result |"
  echo "|---|---|"
  printf '%s\n' "${ROWS_MD[@]}"
} > "$OUTDIR/summary.md"
echo
cat "$OUTDIR/summary.md"
if grep -qiE 'failed|error|not started' "$OUTDIR/summary.md"; then exit 1; fi
