"""Evaluation: the dynamics scorer on Dynamic Shapes (``tracking``, ``dynamics``), and the standard video
metrics (``metrics``: FVD/KVD, IS, CLIPSIM, FID) over features from ``features`` (I3D, C3D, CLIP, Inception); prompt
sets with expected events scored end to end (``expected``, ``prompt_set``, ``prompt_summary``)."""
