# failures.awk: from the output of `go test -v`, what tells why the run
# failed, a line each, cut at 400 characters: the messages of the tests
# that failed or were still running when the run timed out (at most 60 a
# test), the errors their processes logged (at most 20 a test), and a
# panic or timeout with the tests it caught running. Read the output
# twice: awk -f failures.awk LOG LOG.
FNR == NR {
	if (match($0, /--- FAIL: [^ ]+/))
		failed[substr($0, RSTART + 10, RLENGTH - 10)] = 1
	else if (/^running tests:/)
		timedOut = 1
	else if (timedOut && /^\t/)
		failed[$1] = 1
	else
		timedOut = 0
	next
}
/^panic: / { print substr($0, 1, 400); seen = 1; next }
/^running tests:/ { print; running = 1; next }
running && /^\t/ { print; next }
{ running = 0 }
/^=== (RUN|CONT|NAME|PAUSE) / { current = $3; next }
/^ *--- FAIL: / { print; seen = 1; next }
!(current in failed) { next }
/^ +[A-Za-z0-9_]+\.go:[0-9]+: / && !/: taskgate output:$/ {
	if (++messages[current] <= 60)
		print current ": " substr($0, 1, 400)
	next
}
/"level":"(error|fatal|panic)"/ {
	if (++errors[current] <= 20)
		print current ": " substr($0, 1, 400)
}
END {
	if (!seen)
		print "(no test reported a failure or a panic: see the whole output)"
}
