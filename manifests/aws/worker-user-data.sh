#!/bin/sh
# A drover worker, started by its controller. Installs nothing: the drover
# binary is part of the image. The worker is this script's process (exec).
exec >>/var/log/drover-worker.log 2>&1
DROVER_WORKER_TOKEN=WORKER_TOKEN
export DROVER_WORKER_TOKEN
exec /usr/local/bin/drover worker --imds --controller http://CONTROLLER_HOST:7700 --instance-id w0example --slots 2 --ping-interval 5s
