# SPDX-License-Identifier: GPL-2.0
# Results of `cargo test` output (libtest's format), for scripts/test.sh. Prints
#   ok CRATE/TARGET: NAME | fail CRATE/TARGET: NAME    one line per test
#   short CRATE/TARGET N of M reported[, no summary]   a binary that announced M tests
#                                                      ("running M tests") and reported fewer, or
#                                                      never printed its "test result:" summary
# TARGET is "unit" for a crate's own tests, the test file's name for an integration test, and
# "doc" for doc-tests.
function close_binary() {
	if (bin != "" && (got != want || !summary))
		print "short", bin, got " of " want " reported" (summary ? "" : ", no summary")
	bin = ""
}
/^ *Running / {
	close_binary()
	t = $NF; gsub(/[()]/, "", t); n = split(t, p, "/"); t = p[n]; sub(/-[0-9a-f]+$/, "", t)
	kind = ($2 == "unittests") ? "unit" : $2; sub(/^tests\//, "", kind); sub(/\.rs$/, "", kind)
	cur = t "/" kind
	next
}
/^ *Doc-tests / { close_binary(); cur = $2 "/doc"; next }
/^running [0-9]+ tests?$/ { bin = cur; want = $2; got = 0; summary = 0; next }
/^test .* \.\.\. (ok|FAILED|ignored)$/ && bin != "" {
	got++
	st = ($NF == "ok") ? "ok" : "fail"
	name = $0; sub(/^test /, "", name); sub(/ \.\.\. [A-Za-z]+$/, "", name)
	# An ignored test is not a pass.
	print st, bin ": " name
	next
}
/^test result: / { summary = 1; close_binary(); next }
END { close_binary() }
