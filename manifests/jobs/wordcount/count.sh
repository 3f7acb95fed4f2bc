#!/bin/sh
# Counts the words of each file given, writes a summary.
set -e
test -f work/prologue.txt || { echo "the prologue did not run" >&2; exit 1; }
for f in "$@"; do
  printf '%s: %s words\n' "$f" "$(wc -w < "$f" | tr -d ' ')"
done | tee summary.txt
echo "$GREETING"
