#!/bin/sh
# Prologue: prepares the folder the analysis writes into.
mkdir -p results
