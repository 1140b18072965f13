#!/usr/bin/env bash
# Inference of the seed README: text -> video with a trained Dysen-VDM (dysen generate), seed 1000 as LVDM.
#   VDM_MODEL [$RESULTS/<EXPERIMENT_NAME>_vdm/model]  the pipeline folder to sample from
#   PROMPT ["a red circle moves right, then a blue square jumps"]   OUTDIR [$RESULTS/samples]
#   DDIM_STEPS, GUIDANCE [the model's own: dysen model show]  SAMPLE_SEED [1000]
source "$(dirname "$0")/common.sh"
VDM_MODEL=${VDM_MODEL:-$RESULTS/${EXPERIMENT_NAME}_vdm/model}
PROMPT=${PROMPT:-a red circle moves right, then a blue square jumps}
OUTDIR=${OUTDIR:-$RESULTS/samples}
if [[ ! -f $VDM_MODEL/model_index.json ]]; then
    echo "run_sample_vdm_text2video.sh: $VDM_MODEL is not a trained model folder; run run_train_vdm.sh first" >&2
    exit 1
fi
mkdir -p "$OUTDIR"
ARGS=(--model "$VDM_MODEL" --out "$OUTDIR/sample.mp4" --seed "${SAMPLE_SEED:-1000}")
[[ -n ${DDIM_STEPS:-} ]] && ARGS+=(--steps "$DDIM_STEPS")
[[ -n ${GUIDANCE:-} ]] && ARGS+=(--guidance "$GUIDANCE")
exec "${DYSEN_CMD[@]}" generate "$PROMPT" "${ARGS[@]}"
