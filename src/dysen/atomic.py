"""All-or-nothing folder writes: a model, a pipeline or a checkpoint appears whole or not at all.

``staged_dir(target)`` hands out an empty staging folder beside ``target``; when the ``with`` block ends
without error the staging folder takes ``target``'s place (an existing ``target`` is first renamed aside,
then removed), otherwise it is deleted and ``target`` is untouched. Files use
``dysen.dsg.io.write_text_atomic`` (temporary file + ``os.replace``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def staged_dir(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty folder to fill; on success it replaces ``target`` (see the module docstring)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield staging
        if target.exists():
            trash = target.with_name(f".{target.name}.old-{uuid.uuid4().hex}")
            os.rename(target, trash)
            os.rename(staging, target)
            shutil.rmtree(trash)
        else:
            os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
