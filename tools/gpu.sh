#!/usr/bin/env bash
# The GPU check: everything in this repo that needs a GPU, then the recipe ablation table for the
# time left, in one command that ends within DEADLINE seconds (default 540: 9 minutes). Run it to
# check your own GPU, or to add runs to the table.
#
#   bash tools/gpu.sh DATA OUTDIR [--dry-run]
#
# DATA    CIFAR-10: an ImageFolder tree (train/<class>/, test/<class>/), a .tar.gz of one (unpacked
#         into a temporary folder), or a folder for torchvision's CIFAR-10 (downloaded there if missing).
# OUTDIR  summary.md (the table printed last), tests.txt, bench.txt, run_all.txt, and recipe/:
#         the table's raw results so far, earlier slots' and this one's (each run's result.json,
#         log.jsonl and .command, and rows.txt; the distillation teacher's model.pt while a distill
#         run is missing), with ablation-recipe.md and .png built from them.
#
# What a slot carries: the check runs on a copy of this repository, so it needs the CIFAR-10 data
# (DATA) and finds the raw results of the earlier slots in docs/recipe/ (RESULTS=DIR for
# another folder). The table runs in runs/recipe (RUNS=DIR for another), where run_all.sh copies
# them first (each run made on the same files as DATA; runs already there are kept): it skips the
# runs finished and adds missing ones. Copy OUTDIR's recipe/ and ablation-recipe.* into docs/
# to keep what the slot added. runs/recipe is a path relative to the repository on purpose:
# the distill rows name their teacher by it, the same on every machine.
#
# Steps, in this order, each with a time limit:
#   1. the GPU tests: pytest -m gpu (the graphed step against the eager one, no host sync, ...)
#   2. bench.py on CIFAR-10, batch 128: ResNet-20 in fp32, --amp (bf16) and NCHW (--no-channels-last),
#      each the graphed loop, the replay, the eager loop beside them and t_replay; ResNet-56 in fp32
#   3. runs at a time: tools/jobs.py, the images per second of 1, 2, 3, 4 and 6 ResNet-20 runs
#      sharing the GPU; the best J becomes run_all.sh's JOBS, and its speed the guess of a run's length
#   4. run_all.sh recipe for the time left (BUDGET): a run starts only where it can end in it;
#      where the graphed step failed its tests, the table runs eager (--no-cuda-graph)
# --dry-run: the same steps on the CPU at tiny sizes, in two to three minutes (CI runs it): it proves
# that every step works and measures nothing. Environment: DEADLINE, PYTHON, EXTRA (flags for every
# training command, e.g. --cache-dir DIR), RESULTS, RUNS.
set -uo pipefail
[[ $# -ge 2 && $# -le 3 ]] || { echo "usage: bash tools/gpu.sh DATA OUTDIR [--dry-run]" >&2; exit 2; }
absolute() { if [[ $1 == /* ]]; then echo "$1"; else echo "$PWD/$1"; fi; }
DATA=$(absolute "$1") OUTDIR=$(absolute "$2") DRY=${3:-} RESULTS=${RESULTS:+$(absolute "$RESULTS")}
RUNS=${RUNS:+$(absolute "$RUNS")}
[[ -z $DRY || $DRY == --dry-run ]] || { echo "gpu.sh: unknown option $DRY (--dry-run)" >&2; exit 2; }
cd "$(dirname "$0")/.."
RESULTS=${RESULTS:-$PWD/docs/recipe}
RUNS=${RUNS:-runs/recipe}
PYTHON=${PYTHON:-$(command -v python3 || command -v python)}
DEADLINE=${DEADLINE:-540}
EXTRA=${EXTRA:-}
START=$SECONDS
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

if [[ $DATA == *.tar.gz || $DATA == *.tgz ]]; then  # an ImageFolder tree in a tarball: unpack it, find the tree
  tar xzf "$DATA" -C "$WORK" || { echo "gpu.sh: cannot unpack $DATA" >&2; exit 2; }
  DATA=$(dirname "$(find "$WORK" -maxdepth 3 -type d -name train | head -n 1)")
fi

if [[ $DRY == --dry-run ]]; then  # tiny sizes on the CPU: every step runs, nothing is measured
  DEVICE="--device cpu"
  SIZES="--batch-size 8 --subset 32 --test-subset 32"
  BENCH="--rounds 1 --steps 2 --workers 0"
  JOBS_FLAGS="--jobs 1 2 --seconds 2"
  RUN_IMAGES=32  # images a run trains on, over all its epochs
  TABLE=(ROWS="baseline mixup distill" SEEDS=1)
  TABLE_EXTRA="--device cpu --epochs 1 --subset 32 --test-subset 32 --batch-size 8"
else
  DEVICE="--device cuda"
  SIZES="--batch-size 128"
  BENCH="--rounds 5 --steps 20"
  JOBS_FLAGS="--jobs 1 2 3 4 6 --seconds 8"
  RUN_IMAGES=$((30 * 50000))  # recipe: 30 epochs of CIFAR-10
  TABLE=()
  TABLE_EXTRA=""
fi
BENCHES=("resnet20|" "resnet20|--amp" "resnet20|--no-channels-last" "resnet56|")

ROWS_MD=()
row() { ROWS_MD+=("| $1 | $2 |"); echo "gpu.sh: $1: $2"; }
left() { echo $(( DEADLINE - (SECONDS - START) )); }
limit() {  # limit SECONDS: a step's time limit, cut so that the check ends by DEADLINE (a minute kept back)
  local l=$(( $(left) - 60 )); (( l > $1 )) && l=$1; (( l < 5 )) && l=5; echo $l
}
# bench.py's output as one table cell: the loop, the replay and the eager loop, their ratios, t_replay
bench_cell() {
  awk '/^\(a\)/ {a=$(NF-1)} /^\(b\)/ {b=$(NF-1)} /^\(d\)/ {e=$(NF-1)} /^t_replay =/ {t=$3}
       /^a\/b =/ {for (i = 1; i < NF; i++) {if ($i == "a/b") ab=$(i+2); if ($i == "a/d") ae=$(i+2)}}
       END {if (ab == "") {print "failed (see bench.txt)"; exit}
            printf "a %s, b %s%s img/s; a/b %s%s%s\n", a, b, (e == "" ? "" : ", eager " e), ab,
                   (ae == "" ? "" : ", a/eager " ae), (t == "" ? "" : "; t_replay " t " ms")}'
}

GPU=$($PYTHON -c "import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')")
VERSIONS=$($PYTHON -c "import torch, torchvision; print(f'torch {torch.__version__}, torchvision {torchvision.__version__}')")
echo "gpu.sh: $GPU; $VERSIONS; $(nproc) CPU cores; data $DATA; earlier results $RESULTS; table in $RUNS; output in $OUTDIR"

FALLBACK=""  # --no-cuda-graph where the graphed step failed its tests
gpu_tests() {  # 1. the GPU tests
  local t=$SECONDS
  CIFAR_DIR=$DATA timeout "$(limit 150)" $PYTHON -m pytest -q -m gpu -p no:cacheprovider tests > "$OUTDIR/tests.txt" 2>&1
  if grep -qE '^(FAILED|ERROR) .*graph' "$OUTDIR/tests.txt"; then FALLBACK="--no-cuda-graph"; fi
  row "GPU tests" "$(tail -n 1 "$OUTDIR/tests.txt" | tr -d '=') ($((SECONDS - t)) s)${FALLBACK:+; the graphed step failed: the table runs eager}"
}

declare -A RATE  # img/s of (a) per arch, in fp32: how much longer the teacher takes than a row
benches() {  # 2. bench.py on CIFAR-10
  local arch mode
  for bench in "${BENCHES[@]}"; do
    arch=${bench%%|*} mode=${bench#*|}
    # shellcheck disable=SC2086
    command=($PYTHON tools/bench.py --data "$DATA" --arch $arch $SIZES $mode $BENCH $DEVICE $EXTRA)
    echo "\$ ${command[*]}" >> "$OUTDIR/bench.txt"
    timeout "$(limit 90)" "${command[@]}" > "$WORK/bench.out" 2>&1
    cat "$WORK/bench.out" >> "$OUTDIR/bench.txt"
    row "bench $arch ${mode:-fp32}" "$(bench_cell < "$WORK/bench.out")"
    [[ -n $mode ]] || RATE[$arch]=$(awk '/^\(a\)/ {print $(NF-1)}' "$WORK/bench.out")
  done
}

runs_at_a_time() {  # 3. runs at a time: JOBS, and a guess of a run's length from its speed
  # shellcheck disable=SC2086
  command=($PYTHON tools/jobs.py $JOBS_FLAGS -- --data "$DATA" --arch resnet20 $SIZES --amp $DEVICE $EXTRA)
  echo "\$ ${command[*]}" >> "$OUTDIR/bench.txt"
  timeout "$(limit 120)" "${command[@]}" > "$WORK/jobs.out" 2>&1
  cat "$WORK/jobs.out" >> "$OUTDIR/bench.txt"
  JOBS=$(sed -n 's/^JOBS=\([0-9]*\):.*/\1/p' "$WORK/jobs.out")
  local total; total=$(awk -v j="$JOBS" '$1 == j && /at a time:/ {print $5}' "$WORK/jobs.out")
  if [[ -n $JOBS && -n $total ]]; then  # each of JOBS runs trains at total / JOBS img/s; +15% and 20 s for the rest
    RUN_SECONDS=$(awk -v n="$RUN_IMAGES" -v j="$JOBS" -v r="$total" 'BEGIN {printf "%d", 1.15 * n * j / r + 20}')
    TEACHER_SECONDS=$(awk -v s="$RUN_SECONDS" -v a="${RATE[resnet20]:-}" -v b="${RATE[resnet56]:-}" \
      'BEGIN {printf "%d", (a > 0 && b > 0) ? s * a / b : 3 * s}')
  fi
  row "ResNet-20 --amp runs at a time" "$(grep 'at a time:' "$WORK/jobs.out" | awk '{printf "%s%s: %s img/s", sep, $1, $5; sep="; "}') (JOBS=${JOBS:-?}; a run about ${RUN_SECONDS:-?} s, the teacher ${TEACHER_SECONDS:-?} s)"
}

recipe_table() {  # 4. run_all.sh recipe in the time left
  local runs=$RUNS budget t finished planned seeds
  mkdir -p "$runs"
  budget=$(( $(left) - 20 ))
  if (( budget < 60 )); then
    row "run_all.sh recipe" "not started: ${budget} s left of DEADLINE=$DEADLINE"; return
  fi
  t=$SECONDS
  mkdir -p "$WORK/none"  # no raw results yet: an empty folder, not the repo's docs/
  env DATA="$DATA" OUT="$runs" PUBLISHED="$([[ -d $RESULTS ]] && echo "$RESULTS" || echo "$WORK/none")" BUDGET=$budget PYTHON="$PYTHON" ${JOBS:+JOBS=$JOBS} ${RUN_SECONDS:+RUN_SECONDS=$RUN_SECONDS} \
    ${TEACHER_SECONDS:+TEACHER_SECONDS=$TEACHER_SECONDS} "${TABLE[@]}" EXTRA="$TABLE_EXTRA $FALLBACK $EXTRA" \
    bash run_all.sh recipe > "$OUTDIR/run_all.txt" 2>&1
  finished=$(find "$runs" -path '*/s*/result.json' | grep -vc /teacher/)
  planned=$(grep -c '^row ' "$runs/rows.txt" 2>/dev/null); seeds=$(sed -n 's/^seeds //p' "$runs/rows.txt")
  row "run_all.sh recipe" "$finished of $((planned * seeds)) runs finished, $((SECONDS - t)) s of a ${budget}-s budget (JOBS=${JOBS:-default})${FALLBACK:+, eager}$([[ -f $runs/ablation-recipe.md ]] && echo "; table: ablation-recipe.md")"
  mkdir -p "$OUTDIR/recipe"  # the raw results, no checkpoint but the teacher while a distill run waits for it
  (cd "$runs" && find . \( -name result.json -o -name log.jsonl -o -name '*.command' -o -name rows.txt \) -print0 |
    tar cf - --null -T - | tar xf - -C "$OUTDIR/recipe")
  if ls "$runs"/teacher/s0/model.pt > /dev/null 2>&1 &&
     (( $(find "$runs" -path '*/distill/s*/result.json' | wc -l) < seeds )); then
    cp "$runs/teacher/s0/model.pt" "$OUTDIR/recipe/teacher/s0/"
  fi
  cp "$runs"/ablation-recipe.* "$OUTDIR/" 2>/dev/null
}

: > "$OUTDIR/bench.txt"
gpu_tests
benches
runs_at_a_time
recipe_table

{
  echo "# GPU check: $GPU, $VERSIONS, $(date -u +%Y-%m-%d)${DRY:+ (dry run on the CPU: nothing measured)}"
  echo
  echo "Command: \`DEADLINE=$DEADLINE bash tools/gpu.sh $1 OUTDIR${DRY:+ $DRY}\`, $((SECONDS - START)) s in all. Details: tests.txt, bench.txt, run_all.txt."
  echo
  echo "| step | result |"
  echo "|---|---|"
  printf '%s\n' "${ROWS_MD[@]}"
} > "$OUTDIR/summary.md"
echo
cat "$OUTDIR/summary.md"
if grep -qiE 'failed|error|not started' "$OUTDIR/summary.md"; then exit 1; fi
