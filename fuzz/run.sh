#!/usr/bin/env bash
# Builds one fuzz target with AFL++ instrumentation and fuzzes it for a while.
#   fuzz/run.sh <target> <seconds>
# Targets: frame_envelope json_bson filter_match update_apply projection aggregate.
# Findings land in fuzz/out/<target>/default/{crashes,hangs}; a second run resumes.
# Environment: FUZZ_NICE (default 19), FUZZ_MEM_MB (default 1024), FUZZ_TIMEOUT_MS
# (default 2000), FUZZ_MAX_LEN (default 1048576, AFL++'s own maximum), FUZZ_NO_BUILD=1
# (fuzz the binary already built).
set -euo pipefail

target=${1:?usage: fuzz/run.sh <target> <seconds>}
seconds=${2:?usage: fuzz/run.sh <target> <seconds>}
cd "$(dirname "$0")"

if ! command -v cargo-afl >/dev/null; then
    # Also builds AFL++ from the sources the crate ships (needs gcc and make).
    cargo install --locked cargo-afl
fi
[ -d "corpus/$target" ] || { echo "no target $target (see fuzz/README.md)" >&2; exit 2; }

if [ -z "${FUZZ_NO_BUILD:-}" ]; then
    cargo afl build --release --locked --bin "$target"
fi

out="out/$target"
mkdir -p "$out"
input="corpus/$target"
if [ -d "$out/default/queue" ]; then
    input=-   # resume where the last run stopped
fi

export AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_UI=1
export AFL_AUTORESUME=1
nice -n "${FUZZ_NICE:-19}" cargo afl fuzz \
    -i "$input" -o "$out" \
    -x dict/json.dict \
    -m "${FUZZ_MEM_MB:-1024}" -t "${FUZZ_TIMEOUT_MS:-2000}" \
    -G "${FUZZ_MAX_LEN:-1048576}" \
    -V "$seconds" \
    "target/release/$target" || true

stats="$out/default/fuzzer_stats"
if [ -f "$stats" ]; then
    echo "== $target"
    grep -E '^(run_time|execs_done|execs_per_sec|corpus_count|bitmap_cvg|edges_found|total_edges|saved_crashes|saved_hangs|max_depth)\b' "$stats"
fi
ls "$out/default/crashes" 2>/dev/null | grep -v README || true
