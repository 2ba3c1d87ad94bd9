"""Read and rewrite-in-place one file in the root directory of a FAT12/16/32 volume.

The Pi unit's boot-select partition (p1) holds only ``autoboot.txt``. A rename on FAT is not
atomic across a power cut, so the boot control never renames, creates or resizes anything there:
it rewrites the file's bytes in place, inside the clusters the file already owns, and fsyncs.
No directory entry, FAT entry or free-space count changes, so a cut can only tear the file's own
bytes (``firmware.boot_control`` makes any torn mix of two versions still name valid slots).

``FatVolume`` works on anything addressable by offset: a disk image file (tests, the image build)
or a raw partition such as ``/dev/mmcblk0p1`` (the root helper on a unit). It does not mount
anything, never follows subdirectories and never writes metadata.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from hal.errors import IntegrityError

_END_OF_CHAIN = {12: 0xFF8, 16: 0xFFF8, 32: 0x0FFFFFF8}


@dataclass(frozen=True)
class Extent:
    """``length`` bytes of a file at byte ``offset`` of the underlying file or device."""

    offset: int
    length: int


@dataclass(frozen=True)
class _Geometry:
    bytes_per_sector: int
    cluster_bytes: int
    fat_offset: int
    fat_bits: int
    root_offset: int  # FAT12/16: the fixed root directory
    root_bytes: int
    root_cluster: int  # FAT32: the root directory's first cluster
    data_offset: int
    clusters: int


class FatVolume:
    """A FAT volume starting at byte ``offset`` of ``path`` (0 for a partition device)."""

    def __init__(self, path: Path, offset: int = 0) -> None:
        self.path = path
        self.offset = offset

    def __repr__(self) -> str:
        return f"FatVolume({str(self.path)!r}, offset={self.offset})"

    # -- reading -------------------------------------------------------------------------------

    def _pread(self, fd: int, length: int, offset: int) -> bytes:
        data = os.pread(fd, length, self.offset + offset)
        if len(data) != length:
            raise IntegrityError("FAT volume truncated", path=str(self.path))
        return data

    def _geometry(self, fd: int) -> _Geometry:
        bpb = self._pread(fd, 512, 0)
        if bpb[510:512] != b"\x55\xaa":
            raise IntegrityError("no FAT boot sector (signature missing)", path=str(self.path))
        bps = int.from_bytes(bpb[11:13], "little")
        spc = bpb[13]
        reserved = int.from_bytes(bpb[14:16], "little")
        fats = bpb[16]
        root_entries = int.from_bytes(bpb[17:19], "little")
        total = int.from_bytes(bpb[19:21], "little") or int.from_bytes(bpb[32:36], "little")
        fat_sectors = int.from_bytes(bpb[22:24], "little") or int.from_bytes(bpb[36:40], "little")
        if bps not in (512, 1024, 2048, 4096) or spc == 0 or fats == 0 or fat_sectors == 0:
            raise IntegrityError("not a FAT volume (bad BIOS parameter block)", path=str(self.path))
        root_sectors = (root_entries * 32 + bps - 1) // bps
        data_sector = reserved + fats * fat_sectors + root_sectors
        clusters = (total - data_sector) // spc
        bits = 12 if clusters < 4085 else 16 if clusters < 65525 else 32
        return _Geometry(
            bytes_per_sector=bps,
            cluster_bytes=bps * spc,
            fat_offset=reserved * bps,
            fat_bits=bits,
            root_offset=(reserved + fats * fat_sectors) * bps,
            root_bytes=root_sectors * bps,
            root_cluster=int.from_bytes(bpb[44:48], "little") if bits == 32 else 0,
            data_offset=data_sector * bps,
            clusters=clusters,
        )

    def _next_cluster(self, fd: int, geo: _Geometry, cluster: int) -> int:
        if geo.fat_bits == 32:
            raw = self._pread(fd, 4, geo.fat_offset + cluster * 4)
            return int.from_bytes(raw, "little") & 0x0FFFFFFF
        if geo.fat_bits == 16:
            return int.from_bytes(self._pread(fd, 2, geo.fat_offset + cluster * 2), "little")
        pair = int.from_bytes(self._pread(fd, 2, geo.fat_offset + cluster * 3 // 2), "little")
        return pair >> 4 if cluster & 1 else pair & 0xFFF

    def _chain(self, fd: int, geo: _Geometry, first: int) -> list[Extent]:
        extents: list[Extent] = []
        cluster = first
        while cluster < _END_OF_CHAIN[geo.fat_bits]:
            if not 2 <= cluster < geo.clusters + 2 or len(extents) > geo.clusters:
                raise IntegrityError(f"broken cluster chain at {cluster}", path=str(self.path))
            offset = geo.data_offset + (cluster - 2) * geo.cluster_bytes
            extents.append(Extent(self.offset + offset, geo.cluster_bytes))
            cluster = self._next_cluster(fd, geo, cluster)
        return extents

    def _root_directory(self, fd: int, geo: _Geometry) -> bytes:
        if geo.fat_bits != 32:
            return self._pread(fd, geo.root_bytes, geo.root_offset)
        return b"".join(
            os.pread(fd, e.length, e.offset) for e in self._chain(fd, geo, geo.root_cluster)
        )

    def extents(self, name: str) -> list[Extent]:
        """Where the bytes of root-directory file ``name`` are, in order, trimmed to its size."""
        want = _short_name(name)
        fd = os.open(self.path, os.O_RDONLY)
        try:
            geo = self._geometry(fd)
            directory = self._root_directory(fd, geo)
            for i in range(0, len(directory) - 31, 32):
                entry = directory[i : i + 32]
                if entry[0] == 0:
                    break
                if entry[0] == 0xE5 or entry[11] & 0x0F == 0x0F or entry[11] & 0x18:
                    continue  # deleted, long-name part, volume label or directory
                if entry[0:11] != want:
                    continue
                first = int.from_bytes(entry[20:22], "little") << 16
                first |= int.from_bytes(entry[26:28], "little")
                size = int.from_bytes(entry[28:32], "little")
                if size == 0:
                    return []
                out: list[Extent] = []
                left = size
                for extent in self._chain(fd, geo, first):
                    if left == 0:
                        break
                    out.append(Extent(extent.offset, min(left, extent.length)))
                    left -= out[-1].length
                if left:
                    raise IntegrityError(f"{name}: cluster chain shorter than its size")
                return out
        finally:
            os.close(fd)
        raise FileNotFoundError(f"{self.path}: no {name} in the FAT root directory")

    def read_file(self, name: str) -> bytes:
        fd = os.open(self.path, os.O_RDONLY)
        try:
            return b"".join(os.pread(fd, e.length, e.offset) for e in self.extents(name))
        finally:
            os.close(fd)

    # -- writing -------------------------------------------------------------------------------

    def rewrite_file(self, name: str, data: bytes) -> None:
        """Overwrite ``name`` with ``data`` of exactly its current size, in place, then fsync.

        Touches nothing but the file's own data bytes; refuses (``IntegrityError``) a size
        change, which would need the FAT and the directory entry to change too.
        """
        extents = self.extents(name)
        size = sum(e.length for e in extents)
        if len(data) != size:
            raise IntegrityError(
                f"{name} is {size} bytes; an in-place rewrite must keep the size ({len(data)})",
                path=str(self.path),
            )
        fd = os.open(self.path, os.O_RDWR)
        try:
            done = 0
            for e in extents:
                if os.pwrite(fd, data[done : done + e.length], e.offset) != e.length:
                    raise OSError(f"short write to {self.path}")
                done += e.length
            os.fsync(fd)
        finally:
            os.close(fd)


def _short_name(name: str) -> bytes:
    """The 8.3 directory-entry form of a root file name (``autoboot.txt`` -> ``AUTOBOOTTXT``)."""
    stem, _, ext = name.upper().rpartition(".") if "." in name else (name.upper(), "", "")
    if not stem or len(stem) > 8 or len(ext) > 3:
        raise ValueError(f"{name!r} is not an 8.3 name")
    return stem.ljust(8).encode("ascii") + ext.ljust(3).encode("ascii")
