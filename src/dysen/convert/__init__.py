"""Converters from other projects' checkpoints into dysen pipeline folders (``dysen convert``)."""
