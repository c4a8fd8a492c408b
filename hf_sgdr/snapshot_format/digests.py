"""SHA-256 digests of snapshot files, hashed in parallel: one digest per piece of a large file.

One SHA-256 over a whole file is sequential, about 1 GB/s on one core: GPT-2 124M's 498 MB took 0.5 s to
record after its write on the H200's host (and the training run waits for the last write), a 14 GB file 14 s,
and as long again at every load. So a file larger than `PIECE_SIZE` is recorded as the digests of its consecutive
pieces (manifest format 2), which threads hash side by side (`hashlib` and file reads release the GIL);
smaller files keep one whole-file digest. A record from a format 1 manifest is checked whole, as written.
"""

from __future__ import annotations

import contextlib
import hashlib
import mmap
import os
import queue
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .manifest import FileRecord

#: Files larger than this get one digest per piece of this size.
PIECE_SIZE = 32 << 20
#: Bytes read (and hashed, without the GIL) at a time: each read takes the GIL twice, and the training thread waits
#: whenever another thread holds it.
_READ_SIZE = 4 << 20


@dataclass(frozen=True)
class _Piece:
    path: Path
    offset: int
    length: int


def sha256_range(path: Path, offset: int, length: int, buffer: memoryview | None = None) -> str | None:
    """Hex SHA-256 of `length` bytes of `path` from `offset`, read through `buffer` (its own when not given);
    `None` when the file ends before them."""
    if buffer is None:
        with _read_buffer(length) as own:
            return sha256_range(path, offset, length, own)
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as handle:
        handle.seek(offset)
        left = length
        while left:
            read = handle.readinto(buffer[: min(left, len(buffer))])
            if not read:
                return None
            digest.update(buffer[:read])
            left -= read
    return digest.hexdigest()


@contextlib.contextmanager
def _read_buffer(length: int) -> Iterator[memoryview]:
    """A buffer of up to `_READ_SIZE` bytes, its own anonymous mapping, unmapped on exit: a `bytearray` this size
    would come from the hashing thread's malloc arena, which glibc keeps resident after the thread is gone
    (8 MB after each load on 2 cores)."""
    with mmap.mmap(-1, min(_READ_SIZE, max(length, 1))) as mapping, memoryview(mapping) as view:
        yield view


def hash_workers(pieces: int, spare_cores: int = 0) -> int:
    """Threads to hash `pieces` pieces with: one each, at most one per CPU core but `spare_cores`, at least one."""
    return max(1, min(pieces, (os.cpu_count() or 1) - spare_cores))


def _hash_all(pieces: list[_Piece], spare_cores: int = 0) -> list[str | None]:
    """The digest of each piece, on `hash_workers` threads; one read buffer per thread, reused from piece to piece
    (a fresh one per piece is a page fault per 4 KiB each time)."""
    if not pieces:
        return []
    workers = hash_workers(len(pieces), spare_cores)
    longest = max(p.length for p in pieces)
    with contextlib.ExitStack() as buffers:
        free: queue.SimpleQueue[memoryview] = queue.SimpleQueue()
        for _ in range(workers):
            free.put(buffers.enter_context(_read_buffer(longest)))

        def hash_piece(piece: _Piece) -> str | None:
            buffer = free.get()
            try:
                return sha256_range(piece.path, piece.offset, piece.length, buffer)
            finally:
                free.put(buffer)

        if workers == 1:
            return [hash_piece(piece) for piece in pieces]
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hf_sgdr-sha256") as pool:
            return list(pool.map(hash_piece, pieces))


def _split(path: Path, size: int, piece_size: int) -> list[_Piece]:
    return [_Piece(path, offset, min(piece_size, size - offset)) for offset in range(0, size, piece_size)] or [
        _Piece(path, 0, 0)
    ]


def digest_files(paths: Mapping[str, Path], spare_cores: int = 0) -> dict[str, FileRecord]:
    """The `FileRecord` of each file in `paths` (keyed as given), all pieces of all files hashed in parallel on
    every core but `spare_cores`."""
    layout: dict[str, tuple[int, int]] = {}  # name -> (first piece, number of pieces)
    pieces: list[_Piece] = []
    sizes = {}
    for name, path in paths.items():
        sizes[name] = size = path.stat().st_size
        split = _split(path, size, PIECE_SIZE if size > PIECE_SIZE else max(size, 1))
        layout[name] = (len(pieces), len(split))
        pieces.extend(split)
    digests = _hash_all(pieces, spare_cores)
    records = {}
    for name, (first, count) in layout.items():
        mine = digests[first : first + count]
        if any(digest is None for digest in mine):
            raise OSError(f"{paths[name]} shrank while it was being hashed")
        if sizes[name] > PIECE_SIZE:
            records[name] = FileRecord(None, sizes[name], PIECE_SIZE, list(mine))
        else:
            records[name] = FileRecord(mine[0], sizes[name])
    return records


def mismatched_files(files: Mapping[str, tuple[Path, FileRecord]]) -> list[str]:
    """The names (in the given order) whose file differs from its record: a different size, or a digest that
    differs (every file's pieces hashed in parallel, against `piece_sha256` or, for a whole-file record, `sha256`)."""
    layout: dict[str, tuple[int, list[str]]] = {}
    pieces: list[_Piece] = []
    resized = {name for name, (path, record) in files.items() if path.stat().st_size != record.size}
    for name, (path, record) in files.items():
        if name in resized:
            continue
        if record.piece_sha256 is not None and record.piece_size is not None:
            split, expected = _split(path, record.size, record.piece_size), record.piece_sha256
        else:
            split, expected = [_Piece(path, 0, record.size)], [record.sha256 or ""]
        layout[name] = (len(pieces), expected)
        pieces.extend(split)
    digests = _hash_all(pieces)

    def differs(name: str) -> bool:
        if name in resized:
            return True
        first, expected = layout[name]
        return digests[first : first + len(expected)] != expected

    return [name for name in files if differs(name)]
