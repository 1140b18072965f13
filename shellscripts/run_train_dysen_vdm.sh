#!/usr/bin/env bash
# Step 3 (and in-domain fine-tuning) of the seed README: fine-tune the VDM on EXPERIMENT_NAME with gold DSGs
# (dysen finetune), then train Dysen's demonstration selector by RL (dysen train-dysen) and attach it to the
# fine-tuned model (its policy/), whose planner then uses it by default.
# Set EXPERIMENT_NAME, RESUME, DATADIR, CKPT_PATH, VDM_MODEL (see common.sh).
#   VDM_MODEL  [$RESULTS/shapes_vdm/model]             the pre-trained pipeline folder (run_train_vdm.sh)
#   CKPT_PATH  [$RESULTS/<EXPERIMENT_NAME>_finetune]   the fine-tuning run folder (checkpoints, model/)
#   DYSEN_PRESET [paper]  DYSEN_EMBEDDER [minilm]      the RL recipe (tiny/hashing for a smoke run)
# For a real dataset, GOLD (its gold DSGs, JSONL) also feeds the RL reward.
source "$(dirname "$0")/common.sh"
VDM_MODEL=${VDM_MODEL:-$RESULTS/shapes_vdm/model}
CKPT_PATH=${CKPT_PATH:-$RESULTS/${EXPERIMENT_NAME}_finetune}
RL_DATA=shapes
if [[ $EXPERIMENT_NAME != shapes ]]; then
    RL_DATA=${GOLD:?set GOLD to the JSONL of gold DSGs of $EXPERIMENT_NAME (dysen dsg annotate)}
fi
train_args
"${TRAIN_CMD[@]}" finetune --init "$VDM_MODEL" --out "$CKPT_PATH" "${ARGS[@]}"
exec "${DYSEN_CMD[@]}" train-dysen --out "$RESULTS/${EXPERIMENT_NAME}_dysen" --data "$RL_DATA" \
    --preset "${DYSEN_PRESET:-paper}" --embedder "${DYSEN_EMBEDDER:-minilm}" --attach "$CKPT_PATH/model"
