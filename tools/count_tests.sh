#!/usr/bin/env bash
# Prints "N passed, N failed" over test runs, each given as CONFIG:PATTERN
# (CONFIG "default" for none, e.g. "default://..." "asan://..."), from each
# test target's test.xml in that configuration's bazel-testlogs. A target
# with no XML (it did not build, or did not run) counts as one failure, and
# so does one whose XML shows no failure but which Bazel says failed (a
# sanitizer's report at exit, a crash after the last test), if
# $BEP_DIR/CONFIG.json holds that run's --build_event_json_file.
# Exits 1 on failures. With no arguments: "default://...".
set -uo pipefail
cd "$(dirname "$0")/.."

(($# > 0)) || set -- "default://..."
passed=0
failed=0
for run in "$@"; do
  config=${run%%:*}
  pattern=${run#*:}
  flags=()
  [[ "$config" != default ]] && flags=("--config=$config")
  testlogs=$(bazel info "${flags[@]}" bazel-testlogs 2>/dev/null)
  # Labels of the targets Bazel reported as not passed in this run.
  not_passed=""
  bep="${BEP_DIR:-}/$config.json"
  if [[ -n "${BEP_DIR:-}" && -f "$bep" ]]; then
    not_passed=$(jq -r 'select(.id.testSummary != null)
      | select(.testSummary.overallStatus != "PASSED")
      | .id.testSummary.label' "$bep" 2>/dev/null)
  fi
  while read -r target; do
    [[ -z "$target" ]] && continue
    path=${target#//}
    xml="$testlogs/${path/://}/test.xml"
    if [[ ! -f "$xml" ]]; then
      echo "no test results for $target ($config)" >&2
      failed=$((failed + 1))
      continue
    fi
    # The first <testsuites> (GoogleTest) or <testsuite> (Bazel's, for
    # other tests; its <testsuites> has no attributes) element with
    # attributes carries the totals.
    read -r tests failures errors disabled skipped < <(
      grep -m1 -oE '<testsuites?( [a-z_]+="[^"]*")+' "$xml" | awk '{
        t = f = e = d = s = 0
        for (i = 1; i <= NF; i++) {
          split($i, kv, "=")
          gsub(/"/, "", kv[2])
          if (kv[1] == "tests") t = kv[2]
          if (kv[1] == "failures") f = kv[2]
          if (kv[1] == "errors") e = kv[2]
          if (kv[1] == "disabled") d = kv[2]
          if (kv[1] == "skipped") s = kv[2]
        }
        print t, f, e, d, s
      }')
    if [[ -z "${tests:-}" ]]; then
      echo "unreadable test results for $target ($config)" >&2
      failed=$((failed + 1))
      continue
    fi
    bad=$((failures + errors))
    if ((bad == 0)) && grep -qxF "$target" <<<"$not_passed"; then
      echo "$target ($config) failed outside its test cases" >&2
      bad=1
    fi
    passed=$((passed + tests - bad - disabled - skipped))
    failed=$((failed + bad))
  done < <(bazel query "tests($pattern)" 2>/dev/null)
done

echo "$passed passed, $failed failed"
((failed == 0))
