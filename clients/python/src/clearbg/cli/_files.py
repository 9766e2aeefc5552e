"""Which files the CLI takes, where their results go, and writing them safely."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

# What a folder's listing takes as a photo (case-insensitive).
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
# The answers' extensions by --format; `auto` follows the answer's content type.
FORMAT_EXTENSIONS: Dict[str, str] = {"png": "png", "jpg": "jpg", "webp": "webp", "zip": "zip"}
CONTENT_TYPE_EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "application/zip": "zip"}
# With --format auto, an existing output with either of these counts for --skip-existing.
AUTO_EXTENSIONS = ("png", "jpg")
OUTPUT_SUFFIX = "-clearbg"


class UsageError(Exception):
    """A bad command line: exit status 2."""


@dataclass(frozen=True)
class Job:
    file: str  # the photo as the user would name it (the PATH given, joined with its place in a folder)
    source: str  # its absolute path
    output_base: str  # the output's path without its extension (known for auto once the answer came)


@dataclass(frozen=True)
class Layout:
    outdir: Optional[str]  # -o OUTDIR; None: beside the sources as <stem>-clearbg.<ext>
    recursive: bool
    format: Optional[str]  # --format as given (None: the server's default, PNG)


def is_output_name(name: str) -> bool:
    """An output (`photo-clearbg.png`) is never taken for an input."""
    return os.path.splitext(name)[0].endswith(OUTPUT_SUFFIX)


def is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS and not is_output_name(name)


def collect_jobs(paths: Sequence[str], layout: Layout) -> List[Job]:
    """The photos under the PATHs, in order, each once; a PATH that does not exist is a usage
    error. Folders give their image files (subfolders with --recursive), never OUTDIR or an
    output."""
    jobs: List[Job] = []
    seen = set()
    for given in paths:
        if os.path.isdir(given):
            found = list_folder(given, layout)
        elif os.path.isfile(given):
            found = [job_for(given, os.path.basename(given), layout)]
        else:
            raise UsageError(f"no such file or folder: {given}")
        for job in found:
            if job.source not in seen:
                seen.add(job.source)
                jobs.append(job)
    return jobs


def list_folder(folder: str, layout: Layout) -> List[Job]:
    """The folder's photos as they are now (--watch lists them again and again)."""
    outdir = os.path.abspath(layout.outdir) if layout.outdir is not None else None
    jobs: List[Job] = []

    def walk(relative: str) -> None:
        here = os.path.join(folder, relative)
        try:
            names = sorted(os.listdir(here))
        except OSError:
            return  # removed while we looked (watch mode)
        for name in names:
            in_folder = os.path.join(relative, name) if relative else name
            full = os.path.join(folder, in_folder)
            if outdir is not None and os.path.abspath(full) == outdir:
                continue
            if os.path.isdir(full):
                if layout.recursive:
                    walk(in_folder)
            elif os.path.isfile(full) and is_image_name(name):
                jobs.append(job_for(full, in_folder, layout))

    walk("")
    return jobs


def job_for(file: str, relative: str, layout: Layout) -> Job:
    directory, name = os.path.split(relative)
    stem = os.path.splitext(name)[0]
    if layout.outdir is None:
        base = os.path.join(os.path.dirname(file), stem + OUTPUT_SUFFIX)
    else:
        base = os.path.join(layout.outdir, directory, stem)
    return Job(file=file, source=os.path.abspath(file), output_base=base)


def output_path(job: Job, fmt: Optional[str], content_type: str) -> str:
    fixed = FORMAT_EXTENSIONS.get(fmt or "png")
    ext = fixed or CONTENT_TYPE_EXTENSIONS.get(content_type.split(";")[0].strip().lower(), "bin")
    return f"{job.output_base}.{ext}"


def existing_output(job: Job, fmt: Optional[str]) -> Optional[str]:
    """--skip-existing: the output already there (for auto: a .png or a .jpg), else None."""
    fixed = FORMAT_EXTENSIONS.get(fmt or "png")
    for ext in (fixed,) if fixed else AUTO_EXTENSIONS:
        candidate = f"{job.output_base}.{ext}"
        if os.path.exists(candidate):
            return candidate
    return None


def write_output(path: str, data: bytes) -> None:
    """Through a temporary name, so an interrupted run never leaves a partial output that
    --skip-existing would take for a finished one."""
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    partial = f"{path}.{os.getpid()}.partial"
    with open(partial, "wb") as out:
        out.write(data)
    os.replace(partial, path)
