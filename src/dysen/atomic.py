"""All-or-nothing folder writes: a model, a pipeline or a checkpoint appears whole or not at all.

``staged_dir(target)`` hands out an empty staging folder beside ``target``; when the ``with`` block ends
without error the staging folder takes ``target``'s place (an existing ``target`` is first renamed aside,
then removed), otherwise it is deleted and ``target`` is untouched. Single files use ``staged_file`` (a temporary
file + ``os.replace``; ``write_text_atomic`` for text). Every file and folder is fsynced before the rename and
the parent after it, so a power cut leaves the old or the new version, never an empty file under the final name.

``tempfile`` makes its files and folders private (0600 / 0700), and so does safetensors' ``save_file``;
``publish`` gives what takes the target's place the permissions a plain ``open`` or ``mkdir`` would (0666 / 0777
less the umask), so a saved model or a plan can be read by whoever could read the folder it is in.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path


@cache
def _umask() -> int:
    """The process's umask (Python can only read it by setting it, so it is set back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def publish(path: str | os.PathLike[str]) -> None:
    """Give a temporary file or folder the permissions of a newly created one (see the module docstring)."""
    os.chmod(path, (0o777 if os.path.isdir(path) else 0o666) & ~_umask())


@contextmanager
def staged_dir(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty folder to fill; on success it replaces ``target`` (see the module docstring)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield staging
        move_into_place(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def move_into_place(staging: Path, target: Path) -> None:
    """Publish and fsync a filled staging folder, then rename it to ``target`` (an existing one is renamed aside
    first, then removed): ``staged_dir``'s last step, for a folder that several processes filled."""
    for folder, _, files in os.walk(staging):
        publish(folder)
        for name in files:
            publish(os.path.join(folder, name))
            fsync(os.path.join(folder, name))
        fsync(folder)
    if target.exists():
        trash = target.with_name(f".{target.name}.old-{uuid.uuid4().hex}")
        os.rename(target, trash)
        os.rename(staging, target)
        shutil.rmtree(trash)
    else:
        os.rename(staging, target)
    fsync(target.parent)


def fsync(path: str | os.PathLike[str]) -> None:
    """Flush a file's or a folder's contents to the disk (folders: their entries, where the OS allows it)."""
    try:
        handle = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. a folder on Windows
        return
    try:
        os.fsync(handle)
    except OSError:  # some file systems cannot fsync a folder
        pass
    finally:
        os.close(handle)


@contextmanager
def staged_file(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (with its suffix, so writers that read the format from the name
    work) to write the file to; on success it is fsynced and replaces ``path``, otherwise it is removed. The folder
    must exist."""
    path = Path(path)
    if path.is_dir():  # os.replace would name the temporary file in its error
        raise IsADirectoryError(errno.EISDIR, "a folder is in the way of the file to write", str(path))
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
    os.close(handle)
    try:
        yield Path(temp)
        fsync(temp)
        publish(temp)
        os.replace(temp, path)
        fsync(path.parent)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` (its folder made if missing) via ``staged_file``."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with staged_file(path) as temp:
        temp.write_text(text, encoding="utf-8")
