"""MNIST from the four standard IDX .gz files, checked for magic numbers and sizes."""

from __future__ import annotations

import functools
import gzip
import hashlib
import os
import struct
import urllib.request
from pathlib import Path

import numpy as np

from lepton_jax.data.cache import disk_cached
from lepton_jax.errors import UserError

FILES = {
    "train_images": ("train-images-idx3-ubyte.gz", 2051, (60000, 28, 28)),
    "train_labels": ("train-labels-idx1-ubyte.gz", 2049, (60000,)),
    "test_images": ("t10k-images-idx3-ubyte.gz", 2051, (10000, 28, 28)),
    "test_labels": ("t10k-labels-idx1-ubyte.gz", 2049, (10000,)),
}
# sha256 of the *decompressed* IDX payloads: mirrors recompress the .gz files differently,
# but the content is the same everywhere.
SHA256 = {
    "train-images-idx3-ubyte.gz": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte.gz": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte.gz": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte.gz": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)


def read_idx(path: Path, magic: int, shape: tuple) -> np.ndarray:
    """Reads one gzipped IDX file, checking its magic number, dimensions and length.

    Raises:
        UserError: naming the file when it is missing, truncated or of the wrong kind.
    """
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise UserError(f"MNIST file {path} is missing; put the four IDX .gz files in "
                        "data.root or set data.download=true") from None
    except (OSError, EOFError) as e:
        raise UserError(f"MNIST file {path} is corrupted or truncated ({e}); "
                        "replace it with the original file") from None
    ndim = len(shape)
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise UserError(f"MNIST file {path} is truncated: {len(raw)} bytes, no full header")
    (found_magic,) = struct.unpack(">i", raw[:4])
    if found_magic != magic:
        raise UserError(f"MNIST file {path} has magic number {found_magic}, expected {magic}; "
                        "is it the right file?")
    dims = struct.unpack(f">{ndim}i", raw[4:header])
    if tuple(dims) != shape:
        raise UserError(f"MNIST file {path} has shape {tuple(dims)}, expected {shape}")
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        raise UserError(f"MNIST file {path} is truncated: {len(raw)} bytes after "
                        f"decompression, expected {expected}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _fetch(url: str) -> bytes:
    """The bytes at `url`, with a progress bar on a terminal (a line otherwise)."""
    import sys

    from lepton_jax.progress import is_interactive

    print(f"downloading {url}", file=sys.stderr, flush=True)
    with urllib.request.urlopen(url, timeout=30) as r:
        size = int(r.headers.get("Content-Length") or 0) or None
        if not is_interactive():
            return r.read()
        from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn,
                                   TransferSpeedColumn)

        chunks = []
        with Progress(TextColumn(url.rsplit("/", 1)[-1]), BarColumn(), DownloadColumn(),
                      TransferSpeedColumn(), transient=True) as bar:
            task = bar.add_task("download", total=size)
            while chunk := r.read(1 << 16):
                chunks.append(chunk)
                bar.advance(task, len(chunk))
        return b"".join(chunks)


def download(root: Path) -> None:
    """Fetches missing files from the public mirrors and verifies their sha256."""
    root.mkdir(parents=True, exist_ok=True)
    for name, digest in SHA256.items():
        target = root / name
        if target.exists():
            continue
        errors = []
        for mirror in MIRRORS:
            try:
                payload = _fetch(mirror + name)
            except OSError as e:
                errors.append(f"{mirror}: {e}")
                continue
            try:
                content = gzip.decompress(payload)
            except (OSError, EOFError):
                content = b""
            if hashlib.sha256(content).hexdigest() != digest:
                errors.append(f"{mirror}: checksum mismatch")
                continue
            tmp = target.with_suffix(".part")
            tmp.write_bytes(payload)
            os.replace(tmp, target)
            break
        else:
            raise UserError(f"could not download {name}: {'; '.join(errors)}")


def load_mnist(root: str | None, fetch: bool = False):
    """Returns ((x_train, y_train), (x_test, y_test)); images as float32 in [0, 1], NHWC,
    read-only. The decoded pixels are cached per folder and file state within a process
    (sweeps and tests load the same files many times); the float32 images are made anew
    by each call."""
    (x, y), (xt, yt) = load_mnist_pixels(root, fetch)
    return (scale_pixels(x), y), (scale_pixels(xt), yt)


def load_mnist_pixels(root: str | None, fetch: bool = False):
    """As `load_mnist`, with the images as the files' uint8 pixels (0-255, NHWC, read-only).

    `data.name=mnist` splits these and scales only the rows it keeps (`scale_pixels`): all
    60,000 training images as float32 are 188 MB, written and page-faulted on every start,
    where a 10,000-image job keeps 13,000 of them."""
    if not root:
        raise UserError("data.root is not set; point it at the folder holding the MNIST "
                        "IDX .gz files, e.g. data.root=/path/to/mnist")
    folder = Path(root).expanduser()
    if fetch:
        download(folder)
    if not folder.is_dir():
        raise UserError(f"data.root={root!r} does not exist; point it at the folder of the "
                        "MNIST IDX .gz files or set data.download=true")
    first = next(iter(FILES.values()))[0]
    if not (folder / first).exists():  # a folder above them (torchvision's MNIST/raw, say)?
        below = next((p.parent for depth in range(1, 3)
                      for p in sorted(folder.glob("*/" * depth + first))), None)
        if below is not None:
            raise UserError(f"data.root={root!r} holds no MNIST files, but {below} does; set "
                            f"data.root={below}")
    stamps = tuple((st.st_size, st.st_mtime_ns) if (st := _stat(folder / name)) else None
                   for name, _, _ in FILES.values())
    return _decode(str(folder.resolve()), stamps)


def scale_pixels(pixels: np.ndarray) -> np.ndarray:
    """uint8 pixels as float32 in [0, 1]: one pass into one new array (astype then / made
    two, and page-faulted both); read-only, as the cached arrays are."""
    out = np.divide(pixels, np.float32(255.0), dtype=np.float32)
    out.flags.writeable = False
    return out


def _stat(path: Path):
    try:
        return path.stat()
    except FileNotFoundError:
        return None


@functools.lru_cache(maxsize=2)
def _decode(folder: str, stamps: tuple):
    def decode():
        return {key: read_idx(Path(folder) / name, magic, shape)
                for key, (name, magic, shape) in FILES.items()}

    # Keyed by the files' path, sizes and times: a cold start then skips gunzip.
    arrays = decode() if None in stamps else disk_cached("mnist", (folder, stamps), FILES, decode)

    def readonly(a):
        a.flags.writeable = False
        return a

    return ((readonly(arrays["train_images"][..., None]),
             readonly(arrays["train_labels"].astype(np.int32))),
            (readonly(arrays["test_images"][..., None]),
             readonly(arrays["test_labels"].astype(np.int32))))
