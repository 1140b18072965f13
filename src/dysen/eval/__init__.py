"""Evaluation: the dynamics scorer on Dynamic Shapes, and (later) FVD/KVD, IS, CLIPSIM, FID."""
