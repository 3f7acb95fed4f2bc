#!/bin/sh
# Fails on the first attempt, succeeds after (drover sets DROVER_ATTEMPT).
echo "attempt $DROVER_ATTEMPT"
[ "$DROVER_ATTEMPT" -ge 2 ]
