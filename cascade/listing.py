"""Which files a folder holds: the one lister of input images, for ``cascade run``, training data and
evaluation alike. Nothing is read here; each file is judged when it is read (``cascade.imageio``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cascade.imageio import IMAGE_SUFFIXES, REFUSED_SUFFIXES

# refused formats are listed too, to be reported with the reason
INPUT_SUFFIXES = IMAGE_SUFFIXES | REFUSED_SUFFIXES


@dataclass
class Listing:
    """What a folder holds: image files (by name; whether each can be read is found out when it is read),
    the other files, and what could not be looked into or was left out, with the reason."""

    images: list[Path] = field(default_factory=list)
    others: list[Path] = field(default_factory=list)
    unreadable: list[tuple[Path, str]] = field(default_factory=list)  # folders that could not be listed
    left_out: list[tuple[Path, str]] = field(default_factory=list)  # folders not entered, and why
    not_searched: list[Path] = field(default_factory=list)  # sub-folders of a run without -r


def find_inputs(in_dir: Path, out_dir: Path | None, recursive: bool) -> Listing:
    """Image files under ``in_dir`` (sorted), and the other files; hidden files and ``out_dir`` are left out,
    so an output folder inside the input folder is never read back as input (``None``: no output folder). Entries that are not regular
    files (dangling links, FIFOs, devices, link loops) are listed by their name like any other and refused
    when read, so that none of them is skipped without a word."""
    listing = Listing()
    if not in_dir.is_dir():
        listing.images.append(in_dir)
        return listing
    out_resolved = resolved(out_dir) if out_dir is not None else None
    walker = os.walk(in_dir, onerror=lambda e: listing.unreadable.append((Path(e.filename), _reason(e))))
    if not recursive:
        walker = _top_level(in_dir, listing)
    for root, dirs, files in walker:
        kept = []
        for d in sorted(dirs):
            sub = Path(root) / d
            if d.startswith("."):
                continue
            if resolved(sub) == out_resolved:
                _note_output_folder(sub, listing)
            elif sub.is_symlink():
                listing.left_out.append((sub, "a symbolic link to a folder: not followed (it could loop)"))
            else:
                kept.append(d)
        dirs[:] = kept
        for name in sorted(files):
            if name.startswith("."):
                continue
            path = Path(root) / name
            (listing.images if path.suffix.lower() in INPUT_SUFFIXES else listing.others).append(path)
    listing.not_searched = [p for p in listing.not_searched if resolved(p) != out_resolved]
    return listing


def _top_level(folder: Path, listing: Listing) -> Iterator[tuple[str, list[str], list[str]]]:
    """``in_dir``'s own entries in the shape of one ``os.walk`` step: folders are not entered (no -r)."""
    try:
        entries = list(os.scandir(folder))
    except OSError as e:
        listing.unreadable.append((folder, _reason(e)))
        return
    listing.not_searched += sorted(Path(e.path) for e in entries if _is_dir(e) and not e.name.startswith("."))
    yield str(folder), [], [e.name for e in entries if not _is_dir(e)]


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:  # a symbolic link loop: not a folder; reading it will say what it is
        return False


def _note_output_folder(sub: Path, listing: Listing) -> None:
    try:
        images = sum(1 for e in os.scandir(sub) if Path(e.name).suffix.lower() in INPUT_SUFFIXES)
    except OSError:
        images = 0
    if images:
        listing.left_out.append((sub, f"the output folder: its {images} image file(s) are not read as input"))


def resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a symbolic link loop
        return path.absolute()


def _reason(e: OSError) -> str:
    return f"could not list this folder ({e.strerror or e})"
