# failures.awk: from the output of `go test -v`, the messages of the tests
# that failed and the errors their processes logged, a line each, cut at 400
# characters, at most 40 a test. Read the output twice:
# awk -f failures.awk LOG LOG.
FNR == NR {
	if (match($0, /--- FAIL: [^ ]+/))
		failed[substr($0, RSTART + 10, RLENGTH - 10)] = 1
	next
}
/^=== (RUN|CONT|NAME|PAUSE) / { current = $3; next }
/^ *--- FAIL: / { print; next }
current in failed && (/^ +[A-Za-z0-9_]+\.go:[0-9]+: / && !/ output:$/ || /"level":"(error|fatal|panic)"/) {
	if (++printed[current] <= 40)
		print current ": " substr($0, 1, 400)
}
