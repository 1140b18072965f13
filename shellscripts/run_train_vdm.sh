#!/usr/bin/env bash
# Step 2 of the seed README: pre-train the 3D-UNet + RGTrm with gold DSGs on the frozen autoencoder (dysen train-vdm).
# Set PROJ_ROOT, DATADIR, AEPATH, EXPERIMENT_NAME, CONFIG (see common.sh).
#   AEPATH [$RESULTS/<EXPERIMENT_NAME>_ae]  the autoencoder: a train-vae run folder or its model/
# Writes $RESULTS/<EXPERIMENT_NAME>_vdm; its model/ is a pipeline folder (dysen generate --model …).
source "$(dirname "$0")/common.sh"
AEPATH=${AEPATH:-$RESULTS/${EXPERIMENT_NAME}_ae}
train_args
exec "${TRAIN_CMD[@]}" train-vdm --config "$CONFIG" --vae "$AEPATH" --out "$RESULTS/${EXPERIMENT_NAME}_vdm" "${ARGS[@]}"
