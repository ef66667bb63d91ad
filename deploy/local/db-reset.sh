#!/usr/bin/env bash
# Stops the instance, deletes its data folder and starts it afresh.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
"$(dirname "${BASH_SOURCE[0]}")/db-down.sh"
pd_log "removing $PD_DATA_DIR"
rm -rf "$PD_DATA_DIR"
exec "$(dirname "${BASH_SOURCE[0]}")/db-up.sh"
