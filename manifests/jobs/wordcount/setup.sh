#!/bin/sh
# Prologue: runs in the job's folder before the Executable.
set -e
mkdir -p work
echo "prologue ran at $(date -u +%FT%TZ)" > work/prologue.txt
