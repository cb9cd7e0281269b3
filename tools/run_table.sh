# The runner of run_all.sh, which sources it after setting PRESET, FLAGS, ROWS, SEEDS, TEACHER, NOTES
# and row_command (what each row runs): each row over SEEDS seeds into $OUT/<row>/s<seed>, then the
# table. Not a script of its own.
#
# Settings (environment): DATA (data dir; CIFAR-10 is downloaded there, default data), SEEDS, ROWS (a subset of
# row names), OUT (default runs/<preset>), PYTHON (default python), WEIGHTS, EXTRA (more flags for every run,
# e.g. "--device cpu"; not --seed, --out or --data, which are set here, nor --force: every run gets --resume),
# JOBS (runs at a time per GPU: default 4 on a GPU, on a CPU the preset's CPU_JOBS or 1), BUDGET (seconds: start
# a run only where it can end before then, by the mean wall time of the rows finished so far, or by RUN_SECONDS,
# TEACHER_SECONDS before any has: a guess from measured speed; a run still going at the end of the budget is
# stopped, to resume), PUBLISHED (default docs/<preset>: the raw results a table starts from), CHECK=1 (say what
# each run would do: done, carried, resumed, trained or refused; write nothing).
#
# Idempotent and resumable: a finished run (result.json) is skipped, an unfinished one (last.pt) resumes, so a
# stopped run_all.sh loses at most the epoch in flight of each run. Before any run starts, tools/carry.py checks
# every finished run the table would skip or carry as the script's own --resume would (the same flags and
# recipe, the same data, a result.json that its log.jsonl agrees with). DATA is checked once, before any run
# starts (tools/check_data.py), where a run is still to train. Exit status: 0 the table is complete, 1 a run
# failed or was refused, 2 a setting or DATA is wrong (before any run), 3 runs wait (the time budget, or the
# distillation teacher's model.pt): the last lines say which and why; 130 interrupted. JOBS runs go at once on
# each GPU (a CIFAR ResNet-20 step is many small kernels: where Python and the launches set its pace, one run
# leaves the GPU idle between them; tools/jobs.py measures it), each with --threads set so that together they
# use the CPU cores once. The distillation teacher runs beside the rows and only the distill rows wait for it.
# Each run appends to its own DIR.log; this output says which run went where.

# The settings, each checked before any run starts: one line naming the setting and what it takes.
setting() {  # setting NAME PATTERN WHAT
  [[ ${!1} =~ ^($2)$ ]] || { echo "run_all.sh: $1=${!1}: give $3" >&2; exit 2; }
}
setting SEEDS '[1-9][0-9]*' 'the number of seeds, a whole number >= 1'
setting BUDGET '[0-9]+' 'seconds, a whole number (0: no limit)'
setting JOBS '|[1-9][0-9]*' 'runs at a time, a whole number >= 1'
setting CHECK '|0|1' '1 to check what would run without running it, or leave it out'
[[ $CHECK == 1 ]] || CHECK=''
[[ ! -e $OUT || -d $OUT ]] || { echo "run_all.sh: OUT=$OUT is a file: give a folder for the table" >&2; exit 2; }
[[ -d $PUBLISHED || $PUBLISHED == "docs/$PRESET" ]] ||
  { echo "run_all.sh: PUBLISHED=$PUBLISHED is not a folder: give a published table's raw results (docs/<preset>)" >&2; exit 2; }
inside() { [[ $(realpath -m -- "$1")/ == "$(realpath -m -- "$2")"/* ]]; }  # inside A B: A is B or in it
for folder in "$PUBLISHED" docs; do  # a table writes rows.txt, .command files, logs and its page into OUT
  ! inside "$OUT" "$folder" ||
    { echo "run_all.sh: OUT=$OUT is inside $folder, where published tables live: give another OUT (the default: runs/$PRESET)" >&2; exit 2; }
done
MADE_BY=$(sed -n 's/^preset //p' "$OUT/rows.txt" 2>/dev/null)
[[ -z $MADE_BY || $MADE_BY == "$PRESET" ]] ||
  { echo "run_all.sh: OUT=$OUT holds the $MADE_BY table (its rows.txt): give another OUT for $PRESET" >&2; exit 2; }


NGPU=0
[[ $EXTRA == *"--device cpu"* ]] || NGPU=$($PYTHON -c 'import torch; print(torch.cuda.device_count())' 2>/dev/null || echo 0)
if (( NGPU > 0 )); then JOBS=${JOBS:-4}; SLOTS=$((NGPU * JOBS)); else JOBS=${JOBS:-${CPU_JOBS:-1}}; SLOTS=$JOBS; fi
THREADS=$(( $(nproc 2>/dev/null || echo 1) / SLOTS )); (( THREADS > 0 )) || THREADS=1
THREADS_FLAG=(); (( SLOTS > 1 )) && THREADS_FLAG=(--threads "$THREADS")  # one run alone takes every core
START=$SECONDS
FAILED=()
PID=()   # slot -> the pid (and process group) of the run in it
NAME=()  # slot -> the name of that run
LOG=()   # slot -> its DIR.log
CAUSE=() # the last line of each failed run's log

stop() {
  trap '' INT TERM HUP
  echo "run_all.sh: interrupted; each run stops after saving its last.pt: run it again to carry on" >&2
  local pid
  for pid in "${PID[@]}"; do [[ -n $pid ]] && kill -INT -- "-$pid" 2>/dev/null; done
  wait
  exit 130
}
trap stop INT TERM HUP  # HUP: the terminal closed; its runs would train on, orphaned

time_left() { (( BUDGET > 0 )) && echo $(( BUDGET - (SECONDS - START) )) || echo 0; }

# The seconds a run should take: the teacher TEACHER_SECONDS, a row the mean of the finished rows' wall
# times (+10% and the start-up), or RUN_SECONDS before any has finished; 0 where nothing tells.
expected_seconds() {  # expected_seconds NAME
  [[ $1 == teacher ]] && { echo "${TEACHER_SECONDS:-0}"; return; }
  local f
  for f in "$OUT"/*/s*/result.json; do
    [[ -f $f && $f != "$OUT/teacher/"* ]] && sed -n 's/.*"wall_seconds": \([0-9.]*\).*/\1/p' "$f"
  done | awk -v guess="${RUN_SECONDS:-0}" '{sum += $1; n++} END {printf "%d\n", n ? 1.1 * sum / n + 15 : guess}'
}

# The words of a run's command, after the python that runs it.
words() {  # words DIR SCRIPT FLAGS...
  local dir=$1; shift
  # shellcheck disable=SC2086
  printf '%s\n' "$@" --data "$DATA" --out "$dir" --resume "${THREADS_FLAG[@]}" $EXTRA
}

# One run: resumed where it was started; stopped (to resume later) at the budget.
run() {  # run NAME DIR SCRIPT FLAGS...
  local name=$1 dir=$2; shift 2
  local command; mapfile -t command < <(words "$dir" "$@")
  command=("$PYTHON" "${command[@]}")
  local what="$* $EXTRA"  # the run itself, wherever its data and its folder are
  local limit=()
  (( BUDGET > 0 )) && limit=(timeout --foreground --signal=INT "$(time_left)")  # launch() saw it fit
  mkdir -p "$(dirname "$dir")"
  echo "== $(date '+%Y-%m-%d %H:%M:%S') $what" >> "$dir.log"  # appended: each start of the run keeps its lines
  "${limit[@]}" "${command[@]}" >> "$dir.log" 2>&1
  local status=$?
  echo "== $name: $(tail -n 1 "$dir.log")"
  (( status == 0 )) && echo "$what" > "$dir.command"  # the command that finished it, once it has
  if (( status == 124 )) && (( BUDGET > 0 )); then
    echo "== $name: paused at the time budget"; echo "$name" >> "$OUT/paused"; return 0
  fi
  (( status == 0 )) && return 0
  # stopped by Ctrl-C: its last line (above) says so, and stop() below says what to do
  [[ $(tail -n 1 "$dir.log") == "error: interrupted"* ]] || echo "== $name FAILED (exit $status), see $dir.log" >&2
  return 1
}

last_words() {  # last_words DIR.log: what its run printed last (not the line run() starts it with)
  local line; line=$(grep -v '^== ' "$1" 2>/dev/null | tail -n 1); echo "${line:-(it printed nothing; see $1)}"
}

reap() {  # reap SLOT: collect the finished run in SLOT
  wait "${PID[$1]}" || { FAILED+=("${NAME[$1]}"); CAUSE+=("${NAME[$1]}: $(last_words "${LOG[$1]}")"); }
  PID[$1]=''
}

# Start a run in the first free slot (waiting for one); with GPUs, slot s runs on GPU s % NGPU.
launch() {  # launch NAME DIR SCRIPT FLAGS...
  local slot
  while :; do
    for ((slot = 0; slot < SLOTS; slot++)); do
      [[ -z ${PID[slot]:-} ]] && break 2
      kill -0 "${PID[slot]}" 2>/dev/null || { reap "$slot"; break 2; }
    done
    sleep 0.5
  done
  local left need; left=$(time_left)
  if (( BUDGET > 0 )); then  # decided when a slot is free, before the run is announced
    need=$(expected_seconds "$1")
    if (( left <= 30 || left < need )); then
      echo "== $1: not started: ${left}s of the budget left, and it takes about ${need}s"
      echo "$1" >> "$OUT/paused"; return 0
    fi
  fi
  if (( NGPU > 0 )); then
    echo "== $1 -> $2 (GPU $((slot % NGPU)), job $((slot / NGPU + 1)) of $JOBS)"
    CUDA_VISIBLE_DEVICES=$((slot % NGPU)) run "$@" &
  else
    echo "== $1 -> $2$( (( SLOTS > 1 )) && echo " (job $((slot + 1)) of $JOBS)")"
    run "$@" &
  fi
  PID[slot]=$! NAME[slot]=$1 LOG[slot]=$2.log
}

wait_for() {  # wait_for NAME: until the run called NAME has ended (if it is running)
  local slot
  for ((slot = 0; slot < SLOTS; slot++)); do
    [[ -n ${PID[slot]:-} && ${NAME[slot]} == "$1" ]] && reap "$slot"
  done
}

wait_all() {
  local slot
  for ((slot = 0; slot < SLOTS; slot++)); do [[ -n ${PID[slot]:-} ]] && reap "$slot"; done
}

for r in $ROWS; do row_command "$r" > /dev/null || exit 2; done  # a misspelt row stops here, not hours later
REPEATED=$(tr -s ' \n' '\n\n' <<< "$ROWS" | sed '/^$/d' | sort | uniq -d | tr '\n' ' ')
[[ -z $REPEATED ]] || { echo "run_all.sh: ROWS names ${REPEATED% } twice: give each row once" >&2; exit 2; }
for flag in --seed --out --data; do  # run_all.sh sets them for each run
  [[ " $EXTRA " != *" $flag "* && " $EXTRA " != *" $flag="* ]] ||
    { echo "run_all.sh: EXTRA sets $flag, which run_all.sh sets for each run: use SEEDS, OUT or DATA instead" >&2; exit 2; }
done
[[ " $EXTRA " != *" --force "* ]] ||  # the run would stop at "--force ... and --resume ...: drop one of them"
  { echo "run_all.sh: EXTRA holds --force, but run_all.sh gives every run --resume (a finished run is skipped, an unfinished one goes on): to train a run again, delete its folder (OUT/<row>/s<seed>)" >&2; exit 2; }

COMMAND="bash run_all.sh $PRESET"
for v in DATA SEEDS ROWS OUT EXTRA WEIGHTS BUDGET JOBS; do  # the variables the caller set, for the record
  [[ -n ${!v+x} && $(env | grep -c "^$v=") -gt 0 ]] && COMMAND="$v=\"$(tr -s ' \n' '  ' <<< "${!v}" | sed 's/ $//')\" $COMMAND"
done
# Every run of the table in the order they start: the distillation teacher first (a bigger net, the
# preset's recipe, so the longest run), then every row and seed beside it, the distillation rows last.
# A run's command: the row's script, the preset's FLAGS, then the row's own flags, which win where
# they set the same flag (largebatch's --batch-size 1024 over the preset's 128).
each_run() {  # each_run FUNCTION: FUNCTION NAME DIR SCRIPT FLAGS... for each run
  local r s row distill=''; [[ " $ROWS " == *" distill "* ]] && distill=1
  # shellcheck disable=SC2086
  [[ -z $distill ]] || "$1" teacher "$OUT/teacher/s0" baseline.py $FLAGS $TEACHER --seed 0
  for r in $ROWS; do
    [[ $r == distill ]] && continue
    read -ra row <<< "$(row_command "$r")"; row=("${row[@]//@OUT/$OUT}")  # @OUT: one word, spaces and all
    for ((s = 0; s < SEEDS; s++)); do
      # shellcheck disable=SC2086
      "$1" "$r s$s" "$OUT/$r/s$s" "${row[0]}" $FLAGS "${row[@]:1}" --seed $s
    done
  done
  read -ra row <<< "$(row_command distill)"; row=("${row[@]//@OUT/$OUT}")
  for ((s = 0; s < SEEDS && distill; s++)); do
    # shellcheck disable=SC2086
    "$1" "distill s$s" "$OUT/distill/s$s" "${row[0]}" $FLAGS "${row[@]:1}" --seed $s
  done
}

# A finished run is done (tools/carry.py has checked it before any run started); the distillation rows
# start once their teacher is.
start_run() {  # start_run NAME DIR SCRIPT FLAGS...
  if [[ -f $2/result.json ]]; then echo "== $1: done ($2)"; return 0; fi
  if [[ $1 == distill* ]]; then
    wait_for teacher
    if [[ ! -f $OUT/teacher/s0/model.pt ]]; then
      if [[ -f $OUT/teacher/s0/result.json ]]; then  # a teacher carried without its weights
        WAITING+=("$1 waits for the teacher's model.pt, which the finished $OUT/teacher/s0 lacks: copy it there, or delete $OUT/teacher/s0 to train the teacher again")
      else
        WAITING+=("$1 waits for the teacher ($OUT/teacher/s0), which has not finished")
      fi
      echo "== $1: waiting for the teacher's model.pt ($OUT/teacher/s0), which is not there"; return 0
    fi
  fi
  launch "$@"
}

plan_line() {  # plan_line NAME DIR SCRIPT FLAGS...: the run as one line of tab-separated words
  local name=$1 dir=$2; shift 2
  { echo "$name"; echo "$dir"; words "$dir" "$@"; } | paste -sd '\t'
}

# Check every finished run the table would skip or carry, in one process, before anything is written.
if [[ -n $CHECK || -d $PUBLISHED ]] || compgen -G "$OUT/*/s*/result.json" > /dev/null; then
  each_run plan_line | $PYTHON tools/carry.py "$OUT" "$([[ -d $PUBLISHED ]] && echo "$PUBLISHED")" "$DATA" "$PRESET" \
    ${CHECK:+--check} || exit 1
fi
[[ -z $CHECK ]] || exit 0

# The data, checked once before any run starts where one is still to train (offline without CIFAR, each run
# failed alike after trying the download). A python that cannot run the check says nothing: the runs say why.
UNDONE=()  # the words of the first run that is not done
first_undone() { (( ${#UNDONE[@]} )) || [[ -f $2/result.json ]] || mapfile -t UNDONE < <(words "$2" "${@:3}"); }
each_run first_undone
if (( ${#UNDONE[@]} )); then
  problem=$($PYTHON tools/check_data.py "${UNDONE[@]}" 2>&1 >/dev/null) || {
    problem=${problem##*$'\n'}  # its last line
    [[ $problem != "error: "* ]] || { echo "run_all.sh: ${problem#error: }" >&2; exit 2; }
  }
fi

mkdir -p "$OUT"
rm -f "$OUT/paused"  # the runs stopped (or not started) at the time budget, one a line
{ echo "preset $PRESET"; echo "command $COMMAND"; echo "out $OUT"; echo "data $DATA"; echo "flags $FLAGS $EXTRA"
  echo "jobs $SLOTS at a time$( (( NGPU > 0 )) && echo " on $NGPU GPU(s)")"
  echo "seeds $SEEDS"
  for note in "${NOTES[@]}"; do echo "note $(printf '%s' "$note" | tr -s ' \n' '  ')"; done  # one line each
  for r in $ROWS; do line=$(row_command "$r"); echo "row $r ${line//@OUT/$OUT}"; done; } > "$OUT/rows.txt"
WAITING=()  # what keeps the table from finishing, one a line
each_run start_run
wait_all

if [[ -f $OUT/paused ]] && ! ls "$OUT"/*/s*/result.json 2>/dev/null | grep -qv /teacher/; then
  echo "run_all.sh $PRESET: no row has finished yet, so no table yet"
else
  $PYTHON tools/summarize.py "$OUT" || FAILED+=(summarize)
fi
if (( ${#FAILED[@]} )); then
  echo "run_all.sh $PRESET: failed: ${FAILED[*]}" >&2
  # the first failed run's cause as the last line (a missing DATA fails every run alike)
  (( ${#CAUSE[@]} )) && echo "run_all.sh $PRESET: ${CAUSE[0]}" >&2
  exit 1
fi
if [[ -f $OUT/paused ]]; then
  WAITING+=("$(paste -sd ',' "$OUT/paused" | sed 's/,/, /g'): not started or paused at the time budget (BUDGET=$BUDGET); run it again to carry on")
fi
if (( ${#WAITING[@]} )); then
  for line in "${WAITING[@]}"; do echo "run_all.sh $PRESET: not finished: $line"; done
  exit 3
fi
echo "run_all.sh $PRESET: done in $((SECONDS - START))s; table in $(realpath -m -- "$OUT")/ablation-$PRESET.md"
exit 0
