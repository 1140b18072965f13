#!/usr/bin/env bash
# Evaluation of the seed README (FVD/KVD, IS, CLIPSIM, FID, dynamics) over DATACONFIG, PREDCITPATH,
# GOLDPATH, EXPERIMENT_NAME and RESDIR. `dysen eval` is not built yet: this script says so and fails.
source "$(dirname "$0")/common.sh"
echo "run_eval_dysen_vdm.sh: 'dysen eval' is not built yet (see dysen.eval for the metrics available as a library)" >&2
exit 1
