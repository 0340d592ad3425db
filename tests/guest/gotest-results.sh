# Runs a Go test binary and turns its -test.v verdicts into LCFS-RESULT lines (tests/guest/lib.sh's
# format), for busybox sh:
#
#   sh /tests/gotest-results.sh [-k SKIPS] [-o OUT] PREFIX COMMAND [ARG...]
#
# COMMAND must run with -test.v (for lcfs-snapshot-conformance:
# `lcfs-snapshot-conformance -test.v -test.timeout 30m`). Its output is shown as it comes, each
# line behind "    | ", and kept in OUT (default /tmp/gotest.out). Then, in this order:
#
#   LCFS-PLAN: every test below
#   LCFS-RESULT: ok|not ok PREFIX/NAME   per leaf test: a test without subtests. NAME is the Go
#       name without its "Test" and with the top-level test lower-cased: TestLcfs/Basic with
#       PREFIX containerd-conformance is containerd-conformance/lcfs/Basic. PASS is ok, FAIL not
#       ok; SKIP is not ok (a skipped check is not a pass) unless SKIPS lists the name with a
#       reason: then it gets no result, only a line "LCFS-SKIPPED: PREFIX/NAME (REASON)", and is
#       not planned; a test that started (=== RUN) but has no verdict is not ok. A result that is
#       not ok is followed by the test's own last 40 lines of output, behind "    | ".
#   LCFS-RESULT: ok|not ok PREFIX/finished   the binary exited with status 0 and gave at least
#       one verdict: a binary that stops early (a panic, -test.timeout, a crash) or runs nothing
#       cannot pass.
#
# SKIPS: lines "NAME REASON...", NAME as reported (PREFIX/...); '#' starts a comment line.
# Exit status 0 if every result is ok, 1 otherwise. One run per PREFIX and boot: a second would
# report PREFIX/finished again (give each run its own PREFIX).

skips=/dev/null out=/tmp/gotest.out
while [ $# -gt 0 ]; do
	case "$1" in
	-k) skips=$2; shift 2 ;;
	-o) out=$2; shift 2 ;;
	*) break ;;
	esac
done
if [ $# -lt 2 ]; then
	echo "usage: gotest-results.sh [-k SKIPS] [-o OUT] PREFIX COMMAND [ARG...]" >&2
	exit 2
fi
prefix=$1
shift
[ -r "$skips" ] || { echo "gotest-results.sh: cannot read $skips" >&2; exit 2; }

# The status survives the pipe through a file (busybox sh may lack pipefail).
{ "$@" 2>&1; echo $? >"$out.status"; } | tee "$out" | sed 's/^/    | /'
status=$(cat "$out.status" 2>/dev/null)

awk -v prefix="$prefix" -v status="${status:-none}" -v KEEP=40 '
function lcname(go,    top, rest) {
	# TestLcfs/Basic -> PREFIX/lcfs/Basic
	top = go; rest = ""
	if (index(go, "/")) { top = substr(go, 1, index(go, "/") - 1); rest = substr(go, index(go, "/")) }
	sub(/^Test/, "", top)
	return prefix "/" tolower(top) rest
}
function show(go,    i, first) {
	first = kept[go] > KEEP ? kept[go] - KEEP : 0
	for (i = first; i < kept[go]; i++) print "    | " tail[go, i % KEEP]
}
# A listed skip is neither a pass nor a failure: it gets no result and is left out of the plan.
function allowed(go) { return (go in verdict) && verdict[go] == "SKIP" && skipok[lcname(go)] != "" }
FILENAME == ARGV[1] {
	if ($0 ~ /^[ \t]*#/ || NF < 2) next
	reason = $0
	sub(/^[ \t]*[^ \t]+[ \t]+/, "", reason)
	skipok[$1] = reason
	next
}
/^=== RUN / {
	if (!($3 in started)) { started[$3] = 1; order[++n] = $3 }
	cur = $3
	next
}
/^=== (CONT|PAUSE|NAME) / { cur = $3; next }
/^[ \t]*--- (PASS|FAIL|SKIP): / {
	v = $2; sub(/:$/, "", v)
	name = $3
	if (!(name in started)) { started[name] = 1; order[++n] = name }
	# Two verdicts for one test should not happen; the worse one stands.
	if (!(name in verdict) || v == "FAIL" || (v == "SKIP" && verdict[name] == "PASS")) verdict[name] = v
	verdicts++
	cur = name
	next
}
# Every other line is the output of the test named last (-test.v names a test before its lines);
# the last KEEP of each are shown under its result when it fails, where make test prints the lines
# of a failure (the console has them all, with the other process interleaved).
cur != "" {
	k = kept[cur]++ % KEEP
	tail[cur, k] = $0
}
END {
	# Leaves: tests that are no other test'"'"'s parent.
	for (i = 1; i <= n; i++) {
		p = order[i]
		while (index(p, "/")) { sub(/\/[^\/]*$/, "", p); parent[p] = 1 }
	}
	plan = "LCFS-PLAN:"
	for (i = 1; i <= n; i++) if (!(order[i] in parent) && !allowed(order[i])) plan = plan " " lcname(order[i])
	print plan " " prefix "/finished"
	bad = 0
	for (i = 1; i <= n; i++) {
		g = order[i]
		if (g in parent) continue
		r = lcname(g)
		if (!(g in verdict)) { print "LCFS-RESULT: not ok " r " (started, no verdict)"; bad = 1; show(g) }
		else if (verdict[g] == "PASS") print "LCFS-RESULT: ok " r
		else if (allowed(g)) print "LCFS-SKIPPED: " r " (" skipok[r] ")"
		else if (verdict[g] == "SKIP") { print "LCFS-RESULT: not ok " r " (skipped, not listed as an allowed skip)"; bad = 1 }
		else { print "LCFS-RESULT: not ok " r; bad = 1; show(g) }
	}
	if (status == "0" && verdicts > 0) print "LCFS-RESULT: ok " prefix "/finished"
	else { print "LCFS-RESULT: not ok " prefix "/finished (exit status " status ", " verdicts + 0 " verdicts)"; bad = 1 }
	exit bad
}' "$skips" "$out"
