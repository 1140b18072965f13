"""Feature networks of the sample-quality metrics: I3D (FVD/KVD), C3D (IS), CLIP (CLIPSIM), Inception-v3 (FID).

Each module builds its network and loads a user-given weight file lazily; importing this package loads
nothing heavy. The metrics over the features are ``dysen.eval.metrics``; see eval_data.md §1–§4.
"""
