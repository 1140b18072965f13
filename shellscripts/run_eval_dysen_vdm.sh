#!/usr/bin/env bash
# Evaluation of the seed README (dysen eval): writes report.json, report.md and plots into RESDIR.
#   EXPERIMENT_NAME [shapes]   shapes: the dynamics benchmark on Dynamic Shapes (+ ground-truth renders);
#                              ucf101 | msrvtt: the zero-shot protocols (IS + FVD; CLIPSIM + FID + FVD)
#   DATACONFIG [$CONFIG]       preset or YAML of the default model (used when no trained model is found)
#   VDM_MODEL [$RESULTS/<EXPERIMENT_NAME>_vdm/model if it exists, else the shipped model of DATACONFIG]
#   PREDCITPATH []             a folder of videos already generated: score them instead of generating
#   GOLDPATH                   shapes: JSONL of gold DSGs for PREDCITPATH's videos [their gold.jsonl];
#                              ucf101 | msrvtt: the dataset folder [$DATADIR/<EXPERIMENT_NAME>]
#   RESDIR [$RESULTS/<EXPERIMENT_NAME>_eval]
#   NUM_SAMPLES [protocol's]  DDIM_STEPS, GUIDANCE [the model's own: dysen model show]  SAMPLE_SEED [0]
#   EVAL_ARGS []               more `dysen eval` options, e.g. "--ablation --text-only DIR" or "--i3d FILE"
# Metric weights (ucf101 | msrvtt) come from DYSEN_I3D_WEIGHTS, DYSEN_C3D_WEIGHTS (+ DYSEN_C3D_MEAN),
# DYSEN_CLIP_MODEL and DYSEN_INCEPTION_WEIGHTS, or EVAL_ARGS.
source "$(dirname "$0")/common.sh"
DATACONFIG=${DATACONFIG:-$CONFIG}
RESDIR=${RESDIR:-$RESULTS/${EXPERIMENT_NAME}_eval}
ARGS=(--out "$RESDIR" --config "$DATACONFIG" --seed "${SAMPLE_SEED:-0}")
[[ -n ${DDIM_STEPS:-} ]] && ARGS+=(--steps "$DDIM_STEPS")
[[ -n ${GUIDANCE:-} ]] && ARGS+=(--guidance "$GUIDANCE")
if [[ $EXPERIMENT_NAME == shapes ]]; then
    ARGS+=(--protocol shapes --real)
    [[ -n ${PREDCITPATH:-} && -n ${GOLDPATH:-} ]] && ARGS+=(--gold "$GOLDPATH")
else
    ARGS+=(--protocol "$EXPERIMENT_NAME" --data "${GOLDPATH:-$DATADIR/$EXPERIMENT_NAME}")
fi
if [[ -n ${PREDCITPATH:-} ]]; then
    ARGS+=(--videos "$PREDCITPATH")
elif [[ -n ${VDM_MODEL:-} ]]; then
    if [[ ! -f $VDM_MODEL/model_index.json ]]; then
        echo "run_eval_dysen_vdm.sh: VDM_MODEL=$VDM_MODEL is not a trained model folder" >&2
        exit 1
    fi
    ARGS+=(--model "$VDM_MODEL")
elif [[ -f $RESULTS/${EXPERIMENT_NAME}_vdm/model/model_index.json ]]; then
    ARGS+=(--model "$RESULTS/${EXPERIMENT_NAME}_vdm/model")
fi
[[ -n ${NUM_SAMPLES:-} ]] && ARGS+=(--num "$NUM_SAMPLES")
read -r -a EXTRA <<< "${EVAL_ARGS:-}"
exec "${DYSEN_CMD[@]}" eval "${ARGS[@]}" "${EXTRA[@]}"
