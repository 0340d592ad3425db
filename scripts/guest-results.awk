# SPDX-License-Identifier: GPL-2.0
# Verdict on a guest suite's console log (tests/guest/lib.sh writes the lines it reads):
#   LCFS-PLAN: NAME...            tests a boot of the suite declares before running them
#   LCFS-RESULT: ok NAME [(TIME)] | not ok NAME (status N[, TIME])
#   LCFS-DONE rc=N                exit status of the suite script (tests/guest/init.sh)
# Prints one line per finding, for scripts/test.sh and scripts/vm.sh:
#   ok NAME | fail NAME           a result, first report of each name
#   missing NAME                  planned, never reported: the suite stopped early
#   unplanned NAME | twice NAME   reported but not planned, or more than once
#   noplan                        no LCFS-PLAN line at all
#   exit N                        a suite script that ended with status N != 0
# The plan is the union of all boots' plans (a crash round's two boots each declare theirs).
/^LCFS-PLAN: / {
	plans++
	for (i = 2; i <= NF; i++)
		if (!($i in planned)) { planned[$i] = 1; order[++n] = $i }
	next
}
/^LCFS-RESULT: (ok|not ok) / {
	line = $0
	sub(/^LCFS-RESULT: /, "", line)
	st = (line ~ /^ok /) ? "ok" : "fail"
	sub(/^(ok|not ok) /, "", line)
	name = line
	sub(/ .*/, "", name)
	if (name in seen) { print "twice", name; next }
	seen[name] = 1
	print st, name
	if (!(name in planned)) unplanned[++u] = name
	next
}
/^LCFS-DONE rc=/ {
	rc = $0
	sub(/^LCFS-DONE rc=/, "", rc)
	if (rc != "0") print "exit", rc
	next
}
END {
	for (i = 1; i <= u; i++) print "unplanned", unplanned[i]
	for (i = 1; i <= n; i++) if (!(order[i] in seen)) print "missing", order[i]
	if (!plans) print "noplan"
}
