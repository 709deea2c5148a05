"""Finding the images of a batch job and reading them.

A source is a directory (searched recursively for image extensions), a glob (``photos/**/*.jpg``), a
text file with one path per line, a single image, or any of these as an fsspec URL (``s3://bucket/
photos/``, ``gs://...``, ``memory://...``) when the matching fsspec backend is installed.

Every image gets a *key*: its path relative to the source (POSIX slashes). Keys name the image in the
prompt file, in the output folder and in the manifest, so a job reads the same wherever it runs.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm")
_GLOB_CHARS = set("*?[")


class InputError(ValueError):
    """The job's image source cannot be used (nothing found, unknown URL scheme, ...)."""


@dataclass(frozen=True)
class ImageRef:
    """One image of a job: ``key`` (relative POSIX path, unique in the job) and ``uri`` (a local path
    or an fsspec URL to read it from)."""

    key: str
    uri: str


def is_url(text: str) -> bool:
    return "://" in text


def normalize_key(text: str) -> str:
    """A key as written in a prompt file or list: POSIX slashes, no leading './' or '/', no '..'."""
    parts = [p for p in PurePosixPath(text.replace("\\", "/")).parts if p not in ("", ".", "/")]
    return "/".join("__" if p == ".." else p for p in parts)


def _has_glob(text: str) -> bool:
    return any(c in _GLOB_CHARS for c in text)


def _glob_base(pattern: str) -> str:
    """The folder part of a glob pattern before its first wildcard ('a/b/*.jpg' -> 'a/b')."""
    first = min(pattern.index(c) for c in _GLOB_CHARS if c in pattern)
    prefix = pattern[:first].replace("\\", "/")
    base = prefix[: prefix.rfind("/") + 1].rstrip("/")
    return base or ("/" if prefix.startswith("/") else "")


def _is_image_name(name: str, extensions: tuple[str, ...]) -> bool:
    return name.lower().endswith(extensions)


def _fsspec_fs(url: str):
    try:
        import fsspec
    except ImportError:
        raise InputError(f"reading {url} needs fsspec: pip install fsspec (and s3fs, gcsfs, ...)") from None
    try:
        return fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as e:
        scheme = url.split("://", 1)[0]
        raise InputError(f"cannot open {scheme}:// URLs: {e}") from None


def _list_entries(text: str, join) -> list[ImageRef]:
    """A list file's text: one image path (or URL) per line; '#' starts a comment. ``join(entry)`` makes
    a relative path relative to the list file's folder; the key is the path as written (without the
    scheme of a URL)."""
    refs = []
    for line in text.splitlines():
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        if is_url(entry):
            refs.append(ImageRef(normalize_key(entry.split("://", 1)[1]), entry))
        else:
            refs.append(ImageRef(normalize_key(entry), join(entry)))
    return refs


def _local(source: str, extensions: tuple[str, ...]) -> list[ImageRef]:
    if _has_glob(source):
        # the key is relative to the folder the pattern names before its first wildcard
        root = Path(_glob_base(source) or ".")
        found = [Path(p) for p in glob.glob(source, recursive=True)]
        return [
            ImageRef(normalize_key(p.relative_to(root).as_posix()), str(p))
            for p in found
            if p.is_file() and _is_image_name(p.name, extensions)
        ]
    path = Path(source)
    if path.is_dir():
        return [
            ImageRef(p.relative_to(path).as_posix(), str(p))
            for p in path.rglob("*")
            if p.is_file() and _is_image_name(p.name, extensions) and not p.name.startswith(".")
        ]
    if path.is_file():
        if _is_image_name(path.name, extensions):
            return [ImageRef(path.name, str(path))]
        # os.path.join keeps an absolute entry as it is
        return _list_entries(path.read_text(encoding="utf-8"), lambda e: os.path.join(path.parent, e))
    raise InputError(f"no such file or folder: {source}")


def _remote(source: str, extensions: tuple[str, ...]) -> list[ImageRef]:
    fs, root = _fsspec_fs(source)
    protocol = source.split("://", 1)[0]

    def url(p: str) -> str:
        return p if is_url(p) else f"{protocol}://{p.lstrip('/') if protocol != 'file' else p}"

    try:
        if _has_glob(root):
            base = _glob_base(root)
            paths = fs.glob(root)
        elif fs.isdir(root):
            base = root.rstrip("/")
            paths = fs.find(root)
        elif fs.isfile(root):
            if _is_image_name(root, extensions):
                return [ImageRef(root.rsplit("/", 1)[-1], source)]
            parent = source.rsplit("/", 1)[0]
            return _list_entries(fs.cat_file(root).decode("utf-8"), lambda e: f"{parent}/{e}")
        else:
            raise InputError(f"no such file or folder: {source}")
    except OSError as e:
        raise InputError(f"cannot list {source}: {e}") from None
    base = base.rstrip("/")
    refs = []
    for p in paths:
        p = str(p)
        if not _is_image_name(p, extensions) or p.rsplit("/", 1)[-1].startswith("."):
            continue
        rel = p[len(base) :].lstrip("/") if base and p.startswith(base) else p
        refs.append(ImageRef(normalize_key(rel), url(p)))
    return refs


def find_images(
    sources: str | os.PathLike | list[str | os.PathLike], extensions: tuple[str, ...] = IMAGE_EXTENSIONS
) -> list[ImageRef]:
    """The images of one or more sources, sorted by key. Raises InputError when nothing is found or
    two images would share a key."""
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    if not sources:
        raise InputError("no image source given")
    extensions = tuple(e.lower() for e in extensions)
    refs: list[ImageRef] = []
    for src in sources:
        src = os.fspath(src)
        refs.extend(_remote(src, extensions) if is_url(src) else _local(src, extensions))
    if not refs:
        raise InputError(
            f"no images found in {', '.join(map(str, sources))} (looked for {', '.join(extensions)})"
        )
    by_key: dict[str, ImageRef] = {}
    for r in refs:
        if r.key in by_key and by_key[r.key].uri != r.uri:
            raise InputError(f"two images share the key {r.key!r}: {by_key[r.key].uri} and {r.uri}")
        by_key[r.key] = r
    return [by_key[k] for k in sorted(by_key)]


def read_bytes(uri: str) -> bytes:
    """The raw bytes of a local path or fsspec URL."""
    if is_url(uri):
        import fsspec

        with fsspec.open(uri, "rb") as f:
            return f.read()
    with open(uri, "rb") as f:
        return f.read()


def decode_image(data: bytes) -> np.ndarray:
    """Encoded image bytes -> HxWx3 uint8 RGB (:func:`samkit.transforms.decode_image`)."""
    from ..transforms import decode_image as decode

    return decode(data)


def load(ref: ImageRef) -> np.ndarray:
    """Read and decode one image (errors as ValueError/OSError with a one-line reason)."""
    try:
        data = read_bytes(ref.uri)
    except FileNotFoundError:
        raise OSError(f"image not found: {ref.uri}") from None
    if not data:
        raise ValueError("empty file")
    return decode_image(data)
