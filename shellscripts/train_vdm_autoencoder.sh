#!/usr/bin/env bash
# Step 1 of the seed README: pre-train the video autoencoder of the VDM (dysen train-vae).
# Set PROJ_ROOT, DATADIR, EXPERIMENT_NAME, CONFIG (see common.sh); writes $RESULTS/<EXPERIMENT_NAME>_ae,
# whose model/ is the AEPATH of run_train_vdm.sh. Example: EXPERIMENT_NAME=shapes STEPS=2000 bash $0
source "$(dirname "$0")/common.sh"
train_args
exec "${TRAIN_CMD[@]}" train-vae --config "$CONFIG" --out "$RESULTS/${EXPERIMENT_NAME}_ae" "${ARGS[@]}"
