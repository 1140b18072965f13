# Shared defaults of the seed's scripts (sourced, not run). Every variable can be set by the caller.
#   PROJ_ROOT        [the repository]        runs go to $PROJ_ROOT/results/<EXPERIMENT_NAME>_<stage>
#   EXPERIMENT_NAME  [shapes]                shapes (Dynamic Shapes drawn on the fly: no download),
#                                            webvid | ucf101 | msrvtt | activitynet (read from $DATADIR/<name>)
#   DATADIR          [$PROJ_ROOT/dataset]    the seed's dataset folder
#   GOLD             []                      JSONL of gold DSGs for a real dataset (dysen dsg annotate)
#   CONFIG           [shapes-tiny]           model preset name or YAML recipe (configs/)
#   STEPS BATCH_SIZE GRAD_ACCUM LR SAVE_EVERY SEED   [dysen's defaults]  training knobs
#   RESUME           []                      non-empty (e.g. 1): continue the run from its newest checkpoint
#   DYSEN            [dysen]                 the CLI (e.g. "python -m dysen.cli")
#   LAUNCH           []                      dysen launch's flags for the training stages (train-vae, train-vdm,
#                                            finetune), e.g. "--processes 8" (GPUs) or "--processes 2 --cpu": DDP in
#                                            that many processes per machine (empty: one process)
set -euo pipefail
PROJ_ROOT=${PROJ_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
EXPERIMENT_NAME=${EXPERIMENT_NAME:-shapes}
DATADIR=${DATADIR:-$PROJ_ROOT/dataset}
CONFIG=${CONFIG:-shapes-tiny}
RESULTS=${RESULTS:-$PROJ_ROOT/results}
read -r -a DYSEN_CMD <<< "${DYSEN:-dysen}"
read -r -a LAUNCH_FLAGS <<< "${LAUNCH:-}"
if [[ -n ${LAUNCH:-} ]]; then  # the CLI of a training stage: `dysen launch` starts its processes
    TRAIN_CMD=("${DYSEN_CMD[@]}" launch "${LAUNCH_FLAGS[@]}" --)
else
    TRAIN_CMD=("${DYSEN_CMD[@]}")
fi

# --data/--root/--gold for EXPERIMENT_NAME, then the training knobs that are set.
train_args() {
    if [[ $EXPERIMENT_NAME == shapes ]]; then
        ARGS=(--data shapes)
    else
        ARGS=(--data "$EXPERIMENT_NAME" --root "$DATADIR/$EXPERIMENT_NAME")
    fi
    [[ -n ${GOLD:-} ]] && ARGS+=(--gold "$GOLD")
    [[ -n ${STEPS:-} ]] && ARGS+=(--steps "$STEPS")
    [[ -n ${BATCH_SIZE:-} ]] && ARGS+=(--batch-size "$BATCH_SIZE")
    [[ -n ${GRAD_ACCUM:-} ]] && ARGS+=(--grad-accum "$GRAD_ACCUM")
    [[ -n ${LR:-} ]] && ARGS+=(--lr "$LR")
    [[ -n ${SAVE_EVERY:-} ]] && ARGS+=(--save-every "$SAVE_EVERY")
    [[ -n ${SEED:-} ]] && ARGS+=(--seed "$SEED")
    [[ -n ${NUM_CLIPS:-} ]] && ARGS+=(--num-clips "$NUM_CLIPS")
    [[ -n ${RESUME:-} ]] && ARGS+=(--resume latest)
    return 0
}
