"""Training: one Accelerate loop (``loop``, with its ``optimizers``, ``data_order``, ``bad_items``, ``metrics``,
``samples`` and ``signals``), the per-stage tasks (``stages``), the autoencoder's loss terms (``losses``),
pre-cached latents (``latents``), checkpoints and EMA. A run folder's saved settings: ``dysen.run_folder``.

Used by the CLI only (``dysen train-vae``, ``train-vdm``, ``finetune``); importing this package is light.
"""
