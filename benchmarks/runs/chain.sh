# Sourced by the chain scripts. `run NAME ARGS...` runs `selfadapt ARGS...` with its run directory
# at $D/NAME (created under $D/tmp-NAME, moved when named), appending to $LOG; a killed step
# resumes its directory on the next call, a finished one (NAME/done) is skipped.
# Each chain runs in a session of its own (setsid); CHAIN_NICE=19 lowers its autogroup's
# priority (plain `nice` does not reach across the kernel's per-session autogroups).
run() {
  local name=$1; shift
  [ -f "$D/$name/done" ] && return
  local made; made=$(ls -d "$D/tmp-$name"/*/ 2>/dev/null | head -1)
  [ -n "$made" ] && mv "$made" "$D/$name" && rmdir "$D/tmp-$name"
  if [ -d "$D/$name" ]; then set -- "$@" --resume "$D/$name"; else set -- "$@" --runs-dir "$D/tmp-$name"; fi
  .venv/bin/selfadapt "$@" >> "$LOG" 2>&1 || return 1
  made=$(ls -d "$D/tmp-$name"/*/ 2>/dev/null | head -1)
  [ -n "$made" ] && mv "$made" "$D/$name" && rmdir "$D/tmp-$name"
  touch "$D/$name/done"
}
[ -n "$CHAIN_NICE" ] && echo "$CHAIN_NICE" > /proc/self/autogroup 2>/dev/null
mkdir -p "$D"
