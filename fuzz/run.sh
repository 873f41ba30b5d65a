#!/usr/bin/env bash
# Coverage-guided fuzzing of the project's parsers with libFuzzer, on stable Rust.
#
#   fuzz/run.sh [--seconds N] [--globset] [--grow] [--no-regressions] [target...]
#
# Builds the binaries of fuzz/libfuzzer (libfuzzer-sys from crates.io compiles libFuzzer with
# the C++ compiler; rustc's own sancov pass instruments the code: no nightly, no sanitizer),
# then runs each target (default: all) for N seconds (default 4) from its committed corpus
# (fuzz/corpus/<target>/) and crash regressions (fuzz/regressions/<target>/). New inputs go to
# a scratch directory, so the committed corpus is left as it is unless --grow merges the new
# coverage into it. A crash (panic, timeout, out of memory) is copied to
# fuzz/regressions/<target>/, which the replay test (`cargo test -p alp-fuzz`) then runs
# forever after. Prints per target the executions and crashes, then a summary line; exits 1
# on any crash.
#
# --globset: path_match also compares the engine's globs with globset (a longer build).
# --no-regressions: do not start from fuzz/regressions/ (to go on fuzzing past a known crash).
# Keep going after a crash: FUZZ_ARGS="-fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1".
# Environment: CARGO_TARGET_DIR (default: the repository's target/), FUZZ_JOBS (targets run at
# once, default 1), FUZZ_ARGS (more libFuzzer flags).
set -euo pipefail
cd "$(dirname "$0")"
fuzz_dir=$PWD

seconds=4
features=()
grow=false
regressions=true
targets=()
while (($#)); do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    --seconds=*) seconds="${1#*=}"; shift ;;
    --globset) features=(--features globset); shift ;;
    --grow) grow=true; shift ;;
    --no-regressions) regressions=false; shift ;;
    -h | --help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "run.sh: unknown option $1" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
all=(path_normalize path_match selector envelope felix_json felix_proto calico_yaml header_map properties)
((${#targets[@]})) || targets=("${all[@]}")
for t in "${targets[@]}"; do
  [ -f "libfuzzer/src/bin/$t.rs" ] || { echo "run.sh: no target $t (targets: ${all[*]})" >&2; exit 2; }
done

log() { printf 'fuzz: %s\n' "$*" >&2; }

# libFuzzer itself is C++, compiled by libfuzzer-sys's build script.
if ! command -v c++ >/dev/null 2>&1; then
  log "installing Debian's g++ (libfuzzer-sys compiles libFuzzer)"
  if [ "$(id -u)" = 0 ]; then apt_get=(apt-get); else apt_get=(sudo apt-get); fi
  "${apt_get[@]}" update -qq
  DEBIAN_FRONTEND=noninteractive "${apt_get[@]}" install -y -qq g++ >/dev/null
fi

host=$(rustc -vV | sed -n 's/^host: //p')
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$fuzz_dir/../target}"
# What cargo-fuzz passes with `--sanitizer none`, all stable flags. With an explicit --target
# they reach neither build scripts nor proc macros.
export RUSTFLAGS="-Cpasses=sancov-module \
 -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
 -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares \
 --cfg fuzzing"
export CARGO_INCREMENTAL=0
log "building ${#targets[@]} target(s) with libFuzzer (target dir $CARGO_TARGET_DIR)"
bins=()
for t in "${targets[@]}"; do bins+=(--bin "$t"); done
build_start=$SECONDS
cargo build --quiet --release --manifest-path libfuzzer/Cargo.toml --target "$host" \
  "${features[@]}" "${bins[@]}"
log "built in $((SECONDS - build_start)) s"
bin_dir="$CARGO_TARGET_DIR/$host/release"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

# Runs one target; writes "<executions> <crashes> <new inputs>" to $scratch/<target>.result.
run_one() {
  local t=$1 work="$scratch/$t"
  mkdir -p "$work/corpus" "$work/artifacts" "regressions/$t"
  local dirs=("$work/corpus" "corpus/$t")
  if $regressions && [ -n "$(ls -A "regressions/$t" 2>/dev/null)" ]; then
    dirs+=("regressions/$t")
  fi
  local status=0
  # shellcheck disable=SC2086
  "$bin_dir/$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=4096 \
    -print_final_stats=1 -artifact_prefix="$work/artifacts/" ${FUZZ_ARGS:-} "${dirs[@]}" \
    >"$work/log" 2>&1 || status=$?
  local execs crashes=0 f
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log" | tail -1)
  # After a crash libFuzzer prints no final stats: take its last status line (#N ...).
  [ -n "$execs" ] || execs=$(sed -n 's/^#\([0-9]*\).*/\1/p' "$work/log" | tail -1)
  for f in "$work/artifacts"/*; do
    [ -e "$f" ] || continue
    crashes=$((crashes + 1))
    # A known regression that still crashes is not copied again.
    local known=false r
    for r in "regressions/$t"/*; do
      [ -f "$r" ] && cmp -s "$f" "$r" && known=true && break
    done
    $known || cp "$f" "regressions/$t/$(basename "$f")"
  done
  if ((status != 0 && crashes == 0)); then
    crashes=1 # died without an artifact: count it, keep the log
  fi
  if ((crashes)); then
    cp "$work/log" "regressions/$t/crash.log"
  fi
  if $grow; then
    "$bin_dir/$t" -merge=1 -max_len=4096 "corpus/$t" "$work/corpus" >>"$work/log" 2>&1 || true
  fi
  echo "${execs:-0} $crashes $(find "$work/corpus" -type f | wc -l)" >"$scratch/$t.result"
}

jobs=${FUZZ_JOBS:-1}
running=0
for t in "${targets[@]}"; do
  run_one "$t" &
  running=$((running + 1))
  if ((running >= jobs)); then
    wait -n || true
    running=$((running - 1))
  fi
done
wait

total_execs=0
total_crashes=0
for t in "${targets[@]}"; do
  read -r execs crashes new <"$scratch/$t.result"
  printf 'fuzz: %-15s executions %10s  crashes %s  new inputs %s\n' "$t" "$execs" "$crashes" "$new"
  if ((crashes)); then
    log "$t crashed: input(s) and log saved under fuzz/regressions/$t/; the libFuzzer log ends:"
    grep -v '^\(#\|INFO:\|MS:\)' "$scratch/$t/log" | tail -25 >&2
  fi
  total_execs=$((total_execs + execs))
  total_crashes=$((total_crashes + crashes))
done
echo "fuzz: ${#targets[@]} targets, ${seconds} s each: $total_execs executions, $total_crashes crashes"
((total_crashes == 0))
