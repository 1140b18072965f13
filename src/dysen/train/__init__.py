"""Training: one Accelerate loop (``loop``), the per-stage tasks (``stages``), the autoencoder's loss terms
(``losses``), pre-cached latents (``latents``), checkpoints and EMA.

Used by the CLI only (``dysen train-vae``, ``train-vdm``, ``finetune``); importing this package is light.
"""
