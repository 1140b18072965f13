#!/usr/bin/env bash
# Retrain shapes-tiny and its text-only ablation on 2 CPU cores, the two VDMs side by side (one thread each).
#
# The model card's four stages, in the order that keeps both cores busy: (1) the autoencoder, both threads;
# (2) the VDM and the text-only VDM at once, one thread each, from one latent cache; (3) the RL selector;
# (4) both fine-tunes at once, from one latent cache. The defaults are the shipped fifth release's recipe: a
# 32-channel autoencoder and the VDMs on the extended Dynamic Shapes world (WORLD: pink and cyan, everyday
# phrasing, shapes at any turn from the first step), then the fine-tunes on the default world (FT_WORLD), the one
# the test captions come from. Measured (2-core VM, other jobs beside it): about 106 min in all.
#
#   OUT        [runs/retrain]   run folders: ae, vdm, text, policy, ft, text_ft (+ latent caches)
#   WORLD      [the extended world: pink, cyan, everyday phrasing, random start turns] of stages 1-2; "" for the
#              default world
#   FT_WORLD   [""]             world of stage 4 (the fine-tunes); "" is the default world
#   AE_STEPS VDM_STEPS FT_STEPS NUM_CLIPS FT_CLIPS   [1000 3000 1600 6000 4000]
#   AE_CONFIG  [shellscripts/shapes-tiny-ae32.yaml]  config of the autoencoder stage (a preset or a YAML; the VDMs
#              take the autoencoder's own config from its folder); shapes-tiny: the 16-channel one of releases 1-4
#   DYSEN      [dysen]          the CLI
# Every stage resumes its own run when run again (--resume latest), so an interrupted script can simply be rerun.
set -euo pipefail
OUT=${OUT:-runs/retrain}
WORLD=${WORLD---world-colours red,orange,yellow,green,blue,purple,pink,cyan --world-phrasing everyday --world-start-angle random}
FT_WORLD=${FT_WORLD:-}
AE_CONFIG=${AE_CONFIG:-$(dirname "${BASH_SOURCE[0]}")/shapes-tiny-ae32.yaml}
AE_STEPS=${AE_STEPS:-1000} VDM_STEPS=${VDM_STEPS:-3000} FT_STEPS=${FT_STEPS:-1600}
NUM_CLIPS=${NUM_CLIPS:-6000} FT_CLIPS=${FT_CLIPS:-4000}
read -r -a DYSEN_CMD <<< "${DYSEN:-dysen}"
read -r -a WORLD_ARGS <<< "$WORLD"
read -r -a FT_WORLD_ARGS <<< "$FT_WORLD"
mkdir -p "$OUT"

resume() {  # --resume latest when the run folder has a checkpoint already
    [[ -d $1/checkpoints ]] && echo --resume latest || true
}

run() {  # one stage, its log in OUT/<name>.log; THREADS torch threads
    local name=$1 threads=$2
    shift 2
    echo "== $name ($threads thread(s)): ${DYSEN_CMD[*]} $*"
    OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads "${DYSEN_CMD[@]}" "$@" > "$OUT/$name.log" 2>&1
}

# 1. the autoencoder, both threads
[[ -d $OUT/ae/model ]] || run ae 2 train-vae --config "$AE_CONFIG" --out "$OUT/ae" --steps "$AE_STEPS" --batch-size 16 \
    --frames-per-clip 4 --lr 1e-3 --warmup 50 --schedule constant --recon-loss l2 --save-every 100 --seed 0 \
    "${WORLD_ARGS[@]}" $(resume "$OUT/ae")

# 2. the VDM and the text-only VDM: the first writes the latent cache, the second starts once it is whole
vdm=(--num-clips "$NUM_CLIPS" --cache-latents "$OUT/latents" --batch-size 8 --lr 1e-3 --warmup 100
     --schedule constant --save-every 500 --seed 0 --steps "$VDM_STEPS" --workers 0 --vae "$OUT/ae/model")
if [[ ! -d $OUT/vdm/model ]]; then
    run vdm 1 train-vdm --config shapes-tiny --out "$OUT/vdm" "${vdm[@]}" "${WORLD_ARGS[@]}" $(resume "$OUT/vdm") &
    VDM_PID=$!
    until [[ -f $OUT/latents/index.json ]] || ! kill -0 "$VDM_PID" 2> /dev/null; do sleep 10; done
fi
[[ -d $OUT/text/model ]] || run text 1 train-vdm --config shapes-tiny-text-only --out "$OUT/text" "${vdm[@]}" \
    "${WORLD_ARGS[@]}" $(resume "$OUT/text")
[[ -z ${VDM_PID:-} ]] || wait "$VDM_PID"

# 3. the RL demonstration selector, attached to the VDM
[[ -d $OUT/vdm/model/policy ]] || run policy 2 train-dysen --out "$OUT/policy" --data shapes --preset paper \
    --planner rules --attach "$OUT/vdm/model"

# 4. both fine-tunes on new clips, rotating ones three times per epoch
ft=(--num-clips "$FT_CLIPS" --seed 1 --cache-latents "$OUT/latents_s1" --oversample rotates=3 --steps "$FT_STEPS"
    --batch-size 8 --lr 3e-4 --warmup 50 --schedule constant --save-every 200 --workers 0)
if [[ ! -d $OUT/ft/model ]]; then
    run ft 1 finetune --init "$OUT/vdm/model" --out "$OUT/ft" "${ft[@]}" "${FT_WORLD_ARGS[@]}" $(resume "$OUT/ft") &
    FT_PID=$!
    until [[ -f $OUT/latents_s1/index.json ]] || ! kill -0 "$FT_PID" 2> /dev/null; do sleep 10; done
fi
[[ -d $OUT/text_ft/model ]] || run text_ft 1 finetune --init "$OUT/text/model" --out "$OUT/text_ft" "${ft[@]}" \
    "${FT_WORLD_ARGS[@]}" $(resume "$OUT/text_ft")
[[ -z ${FT_PID:-} ]] || wait "$FT_PID"
# 5. the sampling defaults the model card reports (chosen on validation captions for the third release)
for model in "$OUT/ft/model" "$OUT/text_ft/model"; do
    "${DYSEN_CMD[@]}" model set-defaults "$model" --steps 25 --guidance 4 --dsg-guidance none --sampler ddim --eta 0 \
        > /dev/null
done
echo "done: $OUT/ft/model (with policy/) and its text-only ablation $OUT/text_ft/model"
