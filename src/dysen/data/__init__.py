"""Data: video I/O (PyAV), the Dynamic Shapes generator, and dataset loaders."""
