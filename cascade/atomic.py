"""Write-then-rename, so that an interrupted write never leaves a partial file under the final name; and the
clean-up of the temporary files a killed process leaves behind.

A temporary file is named ``.<stem>~<host>-<pid>-<random>.cascade-tmp`` beside its target: hidden, recognisable
as ours, short enough for any legal target name (the stem is cut to fit the file system's name limit), and
telling which process wrote it, so that a later run can remove it once that process is gone.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once: mkstemp makes 0600 files, and results should get the user's usual permissions
TEMP_SUFFIX = ".cascade-tmp"
_HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:4]
_RANDOM_CHARS = 8  # what mkstemp adds
_TEMP_NAME = re.compile(
    r"^\..*~(?P<host>[0-9a-f]{4})-(?P<pid>\d+)-[a-z0-9_]{8}" + re.escape(TEMP_SUFFIX) + "$"
)
STALE_SECONDS = 3600  # a temporary file of another machine (a shared folder) untouched this long is abandoned


@contextmanager
def atomic_path(path: str | Path, overwrite: bool = True) -> Iterator[Path]:
    """Yield a hidden temporary path beside ``path``; when the block finishes it is renamed onto ``path``
    (atomic on one filesystem); when the block raises, or is interrupted, it is removed. With
    ``overwrite=False`` an existing ``path`` raises FileExistsError at that moment and is not replaced."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=TEMP_SUFFIX, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)
        if overwrite:
            os.replace(tmp, path)
        else:
            _publish_new(Path(tmp), path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _publish_new(tmp: Path, path: Path) -> None:
    """Give ``tmp`` the name ``path`` only if nothing has that name: a hard link checks and writes in one step."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise FileExistsError(f"{path} already exists (written meanwhile by another run?)") from None
    except OSError:  # a file system without hard links (FAT, some network shares): check, then rename
        if path.exists():
            raise FileExistsError(f"{path} already exists (written meanwhile by another run?)") from None
        os.replace(tmp, path)
        return
    tmp.unlink()


def _temp_prefix(path: Path) -> str:
    tag = f"~{_HOST}-{os.getpid()}-"
    try:
        name_max = os.pathconf(path.parent, "PC_NAME_MAX")
    except (OSError, ValueError):
        name_max = 255
    room = name_max - 1 - len(tag) - _RANDOM_CHARS - len(TEMP_SUFFIX)  # bytes left for the stem
    stem = path.stem.encode("utf-8", "surrogateescape")[: max(0, room)]
    return "." + stem.decode("utf-8", "ignore") + tag


def _is_abandoned(match: re.Match, path: Path) -> bool:
    if match["host"] == _HOST:
        try:
            os.kill(int(match["pid"]), 0)
        except ProcessLookupError:
            return True  # its writer is gone
        except (PermissionError, OverflowError):
            pass
        else:
            return False
    try:
        return time.time() - path.stat().st_mtime > STALE_SECONDS
    except OSError:
        return False


def remove_abandoned_temps(folder: str | Path, recursive: bool = True) -> list[Path]:
    """Delete the temporary files of ours under ``folder`` whose writing process is gone (on this machine) or
    that nobody has touched for ``STALE_SECONDS`` (written from another machine); returns what was removed."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    walker = os.walk(folder) if recursive else [(str(folder), [], os.listdir(folder))]
    for root, _, files in walker:
        for name in files:
            match = _TEMP_NAME.match(name)
            path = Path(root) / name
            if match and _is_abandoned(match, path):
                try:
                    path.unlink()
                    removed.append(path)
                except OSError:
                    pass  # gone already, or not ours to remove: nothing to clean
    return removed
