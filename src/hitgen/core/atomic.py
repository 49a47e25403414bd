"""Writing a file so that it appears whole or not at all: a hidden partial name, then a rename."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hitgen.core.errors import HitgenError


def partial_path(path: str | Path) -> Path:
    """The hidden name a file is written under before it is complete (``.NAME.partial``)."""
    path = Path(path)
    return path.with_name(f".{path.name}.partial")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a partial path to write; on success it replaces ``path``, on any error it is removed."""
    path = Path(path)
    tmp = partial_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def check_new_output(path: str | Path, overwrite: bool, what: str = "output", folder: bool = False) -> Path:
    """Before any work: the output's parent folder exists and is writable, and the output itself
    does not exist (or may be replaced: overwrite) and is of the right kind (file or folder)."""
    path = Path(path)
    parent = path.parent
    if not parent.is_dir():
        raise HitgenError(f"{what} {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise HitgenError(f"{what} {path}: folder {parent} is not writable")
    if path.exists():
        if folder and not path.is_dir():
            raise HitgenError(f"{what} {path}: exists and is not a folder")
        if not folder and path.is_dir():
            raise HitgenError(f"{what} {path}: is a folder; give a file name")
        if not overwrite:
            raise HitgenError(f"{what} {path}: already exists (use --overwrite to replace it)")
    return path


@contextmanager
def atomic_folder(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty hidden folder to fill; on success it takes the place of ``path`` (an existing
    folder there is replaced only with overwrite), on any error it is removed. A killed run leaves
    at most the hidden folder, never a ``path`` whose contents do not belong together."""
    path = Path(path)
    check_new_output(path, overwrite, folder=True)
    tmp = partial_path(path)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.replaced")
            if old.exists():
                shutil.rmtree(old)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def safe_name(name: str, what: str = "name") -> str:
    """A name that stays inside its parent folder: one path component of letters, digits, '.', '_'
    and '-', not starting with '.'."""
    if not name or name.startswith(".") or any(not (c.isalnum() or c in "._-") for c in name):
        raise HitgenError(f"{what} {name!r}: use letters, digits, '.', '_' and '-' only (not a path), not starting with '.'")
    return name
