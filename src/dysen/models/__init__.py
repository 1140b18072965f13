"""Networks only (no diffusion maths): video autoencoders, text encoders, RGTrm, the 3D-UNet.

Each network is built from one frozen dataclass config and saved as ``config.json`` +
``model.safetensors`` (``dysen.models.pretrained``).
"""
