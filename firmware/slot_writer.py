"""Writing a firmware image into a slot, reading it back, and the slot records.

Two writers behind one protocol (``SlotWriter``), used by ``firmware.flash`` phase by phase:

- ``DirectorySlotWriter``: the simulated unit, whose slots are DEVICE/slots/A and B.
- ``PartitionSlotWriter``: a Pi unit's SD card (or a disk image of one). A slot image is a tar of
  ``boot.vfat``, ``root.ext4`` and ``packages.txt`` (docs/unit-layout.md); the two filesystem
  images are streamed straight from the bundle into the slot's boot and root partitions, hashed
  as they go, fsynced, dropped from the page cache and read back from the card.

Neither writer ever writes the running slot's partitions, nor a mounted one: ``PartitionSlotWriter``
checks /proc/self/mounts and the root on /proc/cmdline (both injectable) before every write.
Nothing here decides which slot to write or when to boot it (``firmware.flash``,
``firmware.health``).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tarfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any, BinaryIO, Protocol

from firmware.boot_control import SLOTS, check_slot
from firmware.bundle import (
    CHUNK_BYTES,
    BundleHeader,
    Manifest,
    payload_bytes_tar,
    tar_member_names,
)
from firmware.fat import FatVolume
from firmware.layout import UnitLayout
from firmware.sd_card import (
    BOOT_PARTITION,
    ROOT_PARTITION,
    PartitionTable,
    partition_device,
    read_partition_table,
    root_partuuid,
)
from firmware.update_state import canonical_json, read_json_file
from hal.durable import fsync_dir, remove_durably, write_atomic
from hal.errors import IntegrityError, RefusedError

SLOT_FORMAT = "bwc-slot/1"
PARTITION_SLOT_FORMAT = "bwc-partition-slot/1"
SLOT_IMAGE_MEMBERS = ("boot.vfat", "root.ext4", "packages.txt")
HEALTH_FAIL_KNOB = "HEALTH_FAIL"
"""Test-only fault knob (docs/firmware.md): a slot whose payload holds a file of this name fails
its health check. A slot image may carry it beside its three members; it is written nowhere,
only named in the slot record, so a rollback can be rehearsed with a real slot image."""
PACKAGES_MAX_BYTES = 1 << 20

Progress = Callable[[int], None]
"""Told the number of bytes done so far in the current phase."""


@dataclass(frozen=True)
class SlotInfo:
    """What a slot holds: its record, written after the image was read back intact."""

    slot: str
    version: str
    security_version: int
    sha256: str
    size: int
    kind: str
    compatible: str
    channel: str
    build_utc_s: int
    source: str  # "factory" or "bundle"

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": SLOT_FORMAT,
            "slot": self.slot,
            "version": self.version,
            "security_version": self.security_version,
            "sha256": self.sha256,
            "size": self.size,
            "kind": self.kind,
            "compatible": self.compatible,
            "channel": self.channel,
            "build_utc_s": self.build_utc_s,
            "source": self.source,
        }

    @staticmethod
    def from_dict(raw: Any, path: Path) -> SlotInfo:
        try:
            if raw["format"] != SLOT_FORMAT:
                raise KeyError("format")
            return SlotInfo(
                slot=str(raw["slot"]),
                version=str(raw["version"]),
                security_version=int(raw["security_version"]),
                sha256=str(raw["sha256"]),
                size=int(raw["size"]),
                kind=str(raw["kind"]),
                compatible=str(raw["compatible"]),
                channel=str(raw["channel"]),
                build_utc_s=int(raw["build_utc_s"]),
                source=str(raw["source"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise IntegrityError(f"malformed slot record ({exc})", path=str(path)) from None

    @staticmethod
    def from_manifest(slot: str, m: Manifest) -> SlotInfo:
        return SlotInfo(
            slot=slot,
            version=m.version,
            security_version=m.security_version,
            sha256=m.payload_sha256,
            size=m.payload_size,
            kind=m.payload_kind,
            compatible=m.compatible,
            channel=m.channel,
            build_utc_s=m.build_utc_s,
            source="bundle",
        )


class SlotWriter(Protocol):
    """Where slot images go. ``firmware.flash`` calls these in its phase order."""

    def read_info(self, slot: str) -> SlotInfo | None:
        """The slot's record, or None if it holds no complete install."""
        ...

    def verify(self, slot: str) -> SlotInfo:
        """Re-read the slot against its record; ``IntegrityError`` if it is not intact."""
        ...

    def payload_names(self, slot: str) -> list[str]:
        """Names in the installed image (the simulator's fault knobs look here)."""
        ...

    def check_fits(self, slot: str, members: dict[str, int]) -> None:
        """``RefusedError`` unless a payload with these tar members (name -> size) fits."""
        ...

    def bytes_needed(self, payload_size: int) -> int:
        """Free bytes an install of a payload this size takes on the unit's own filesystem."""
        ...

    def discard_leftovers(self) -> None:
        """Forget what an interrupted install left behind (never a slot's record)."""
        ...

    def invalidate(self, slot: str) -> None:
        """Drop the slot's record before its contents are overwritten."""
        ...

    def write(
        self, slot: str, header: BundleHeader, chunks: Iterable[bytes], progress: Progress
    ) -> None:
        """Stream the payload into the slot, hashing as it goes, then make it durable."""
        ...

    def read_back(self, slot: str, manifest: Manifest, progress: Progress) -> None:
        """Read what ``write`` wrote back from the medium; ``IntegrityError`` if it differs."""
        ...

    def install(self, slot: str, info: SlotInfo) -> None:
        """Make the written, read-back image the slot's content, with its record (durable)."""
        ...

    def install_factory(self, template: SlotInfo) -> None:
        """Record the factory firmware of slot ``template.slot`` (size and hash filled in here)."""
        ...


def hash_file(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _write_file(path: Path, data: bytes) -> None:
    with path.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


# ---------------------------------------------------------------------------------------------
# The simulated unit: a directory per slot


SlotFileOpener = Callable[[Path], BinaryIO]
"""Opens the slot image for writing; tests inject one that loses power after N bytes."""


def _open_for_write(path: Path) -> BinaryIO:
    return path.open("wb")


class DirectorySlotWriter:
    """DEVICE/slots/X/{image,slot.json,manifest.json,manifest.sig}; installs swap a temp dir in."""

    def __init__(self, layout: UnitLayout, open_slot_file: SlotFileOpener = _open_for_write):
        self.layout = layout
        self._open = open_slot_file

    def _incoming(self, slot: str) -> Path:
        return self.layout.slots / f".incoming-{slot}"

    def _outgoing(self, slot: str) -> Path:
        return self.layout.slots / f".outgoing-{slot}"

    def read_info(self, slot: str) -> SlotInfo | None:
        path = self.layout.slot(check_slot(slot)) / "slot.json"
        if not path.is_file():
            return None
        return SlotInfo.from_dict(read_json_file(path, max_bytes=16 * 1024), path)

    def verify(self, slot: str) -> SlotInfo:
        info = self.read_info(slot)
        if info is None:
            raise IntegrityError(f"slot {slot} holds no complete install")
        image = self.layout.slot(slot) / "image"
        try:
            size, sha256 = hash_file(image)
        except OSError as exc:
            raise IntegrityError(
                f"cannot read the image ({exc.strerror})", path=str(image)
            ) from None
        if (size, sha256) != (info.size, info.sha256):
            raise IntegrityError(f"slot {slot} image does not match its record", path=str(image))
        return info

    def payload_names(self, slot: str) -> list[str]:
        image = self.layout.slot(check_slot(slot)) / "image"
        try:
            with image.open("rb") as f:
                return tar_member_names(f)
        except OSError:
            return []

    def check_fits(self, slot: str, members: dict[str, int]) -> None:
        pass  # the preflight's free-space check covers a directory slot

    def bytes_needed(self, payload_size: int) -> int:
        return payload_size  # the image is a file next to the unit's data

    def discard_leftovers(self) -> None:
        for slot in SLOTS:
            for path in (self._incoming(slot), self._outgoing(slot)):
                if path.exists():
                    shutil.rmtree(path)
        if self.layout.slots.exists():
            fsync_dir(self.layout.slots)

    def invalidate(self, slot: str) -> None:
        pass  # the slot's state ("empty") says it all; its directory is swapped at install

    def write(
        self, slot: str, header: BundleHeader, chunks: Iterable[bytes], progress: Progress
    ) -> None:
        incoming = self._incoming(slot)
        incoming.mkdir(parents=True)
        done = 0
        digest = hashlib.sha256()
        with self._open(incoming / "image") as out:
            for chunk in chunks:
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                progress(done)
            out.flush()
            os.fsync(out.fileno())
        _write_file(incoming / "manifest.json", header.manifest_bytes)
        _write_file(incoming / "manifest.sig", header.signature)
        if digest.hexdigest() != header.manifest.payload_sha256:
            raise IntegrityError("written bytes do not match the manifest")
        info = SlotInfo.from_manifest(slot, header.manifest)
        _write_file(incoming / "slot.json", canonical_json(info.to_dict()) + b"\n")
        fsync_dir(incoming)

    def read_back(self, slot: str, manifest: Manifest, progress: Progress) -> None:
        incoming = self._incoming(slot)
        size, sha256 = hash_file(incoming / "image")
        progress(size)
        if (size, sha256) != (manifest.payload_size, manifest.payload_sha256):
            raise IntegrityError("read-back differs from the signed manifest", path=str(incoming))

    def install(self, slot: str, info: SlotInfo) -> None:
        final = self.layout.slot(slot)
        outgoing = self._outgoing(slot)
        if final.exists():
            final.rename(outgoing)
        self._incoming(slot).rename(final)
        fsync_dir(self.layout.slots)
        if outgoing.exists():
            shutil.rmtree(outgoing)

    def install_factory(self, template: SlotInfo) -> None:
        """A fresh simulated unit: slot ``template.slot`` gets a tiny tar naming its version."""
        image = payload_bytes_tar(
            {
                "VERSION": f"{template.version}\n".encode(),
                "README": b"Factory firmware of the simulated body-worn camera.\n",
            }
        )
        info = replace(template, sha256=hashlib.sha256(image).hexdigest(), size=len(image))
        slot_dir = self.layout.slot(info.slot)
        slot_dir.mkdir(parents=True, exist_ok=True)
        for other in SLOTS:
            self.layout.slot(other).mkdir(parents=True, exist_ok=True)
        _write_file(slot_dir / "image", image)
        write_atomic(slot_dir / "slot.json", canonical_json(info.to_dict()) + b"\n")
        fsync_dir(self.layout.slots)


# ---------------------------------------------------------------------------------------------
# A Pi unit: the slot's boot and root partitions on the SD card


@dataclass(frozen=True)
class Region:
    """One filesystem image written to one partition: the first ``size`` bytes of it."""

    name: str
    partition: int
    size: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "partition": self.partition, "size": self.size,
                "sha256": self.sha256}  # fmt: skip


DiskOpener = Callable[[Path], BinaryIO]
"""Opens the card for writing (``r+b``); tests inject one that loses power after N bytes."""


def _open_disk(path: Path) -> BinaryIO:
    return path.open("r+b", buffering=0)


class _ChunkReader:
    """A read-only file over an iterator of chunks, for tarfile's stream mode.

    Keeps the current chunk and an offset into it, so a read copies only what it returns (tarfile
    reads in small blocks; re-slicing a 1 MiB buffer per block would copy it a hundred times).
    """

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._chunk = b""
        self._pos = 0

    def read(self, size: int = -1) -> bytes:
        parts: list[bytes] = []
        want = size
        while want != 0:
            if self._pos >= len(self._chunk):
                chunk = next(self._chunks, None)
                if chunk is None:
                    break
                self._chunk, self._pos = chunk, 0
                continue
            end = len(self._chunk) if want < 0 else min(len(self._chunk), self._pos + want)
            parts.append(self._chunk[self._pos : end])
            if want > 0:
                want -= end - self._pos
            self._pos = end
        return b"".join(parts)

    def drain(self) -> None:
        """Consume the rest, so the source sees its end (and checks its hash)."""
        self._chunk, self._pos = b"", 0
        for _ in self._chunks:
            pass


_CMDLINE_ROOT = re.compile(rb"root=PARTUUID=[0-9a-fA-F]{8}-[0-9a-fA-F]{2}")


class PartitionSlotWriter:
    """Slots on an SD card laid out as docs/unit-layout.md: A = p2 + p5, B = p3 + p6.

    ``disk`` is the whole card: ``/dev/mmcblk0`` on a unit, a disk image file in tests and in the
    image build. Records go to ``layout`` (the ext4 data partition): update/slots/X.json.
    ``mounts`` and ``cmdline`` are where the running system says what is mounted and which root
    it booted; a target that is either is refused before anything is written.
    """

    def __init__(
        self,
        disk: Path,
        layout: UnitLayout,
        *,
        mounts: Path = Path("/proc/self/mounts"),
        cmdline: Path = Path("/proc/cmdline"),
        open_disk: DiskOpener = _open_disk,
    ) -> None:
        self.disk = disk
        self.layout = layout
        self._mounts = mounts
        self._cmdline = cmdline
        self._open_disk = open_disk
        self._staged: dict[str, list[Region]] = {}
        self._staged_names: dict[str, list[str]] = {}

    # -- where ---------------------------------------------------------------------------------

    def table(self) -> PartitionTable:
        return read_partition_table(self.disk)

    def _record_path(self, slot: str) -> Path:
        return self.layout.update / "slots" / f"{check_slot(slot)}.json"

    def _partitions(self, slot: str) -> dict[str, int]:
        return {"boot.vfat": BOOT_PARTITION[slot], "root.ext4": ROOT_PARTITION[slot]}

    def refuse_unsafe_target(self, slot: str) -> None:
        """``RefusedError`` if a partition of ``slot`` is mounted or is the running root."""
        table = self.table()
        numbers = set(self._partitions(slot).values())
        try:
            cmdline = self._cmdline.read_text(errors="replace")
        except OSError:
            cmdline = ""
        root = root_partuuid(cmdline)
        if root is not None and root[0] == table.disk_id and root[1] in numbers:
            raise RefusedError(
                f"partition {root[1]} of {self.disk} is the running root; refusing to write it"
            )
        names: dict[str, int] = {}
        for n in numbers:
            names[str(partition_device(self.disk, n))] = n
            names[os.path.realpath(partition_device(self.disk, n))] = n
            names[f"PARTUUID={table.partuuid(n)}"] = n
        try:
            lines = self._mounts.read_text(errors="replace").splitlines()
        except OSError:
            lines = []
        for line in lines:
            fields = line.split()
            if not fields:
                continue
            source = fields[0].replace("\\040", " ")
            candidates = {source}
            if source.startswith("/dev/"):
                candidates.add(os.path.realpath(source))
            for candidate in candidates:
                if candidate in names:
                    where = fields[1] if len(fields) > 1 else "?"
                    raise RefusedError(
                        f"partition {names[candidate]} ({source}) is mounted at {where}; "
                        "refusing to write it"
                    )

    # -- records -------------------------------------------------------------------------------

    def _read_record(self, slot: str) -> tuple[SlotInfo, list[Region], list[str]] | None:
        path = self._record_path(slot)
        if not path.is_file():
            return None
        raw = read_json_file(path, max_bytes=PACKAGES_MAX_BYTES * 2)
        if not isinstance(raw, dict) or raw.get("format") != PARTITION_SLOT_FORMAT:
            raise IntegrityError(f"not a {PARTITION_SLOT_FORMAT} record", path=str(path))
        try:
            regions = [
                Region(str(r["name"]), int(r["partition"]), int(r["size"]), str(r["sha256"]))
                for r in raw["regions"]
            ]
            names = [str(n) for n in raw["members"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise IntegrityError(f"malformed slot record ({exc})", path=str(path)) from None
        return SlotInfo.from_dict(raw["info"], path), regions, names

    def read_info(self, slot: str) -> SlotInfo | None:
        record = self._read_record(slot)
        return record[0] if record else None

    def payload_names(self, slot: str) -> list[str]:
        record = self._read_record(slot)
        return record[2] if record else []

    def _hash_region(self, partition: int, size: int, progress: Progress | None = None) -> str:
        part = self.table().get(partition, str(self.disk))
        digest = hashlib.sha256()
        fd = os.open(self.disk, os.O_RDONLY)
        try:
            # Drop cached pages first so the bytes come from the card, not from memory.
            os.posix_fadvise(fd, part.start, size, os.POSIX_FADV_DONTNEED)
            done = 0
            while done < size:
                chunk = os.pread(fd, min(CHUNK_BYTES, size - done), part.start + done)
                if not chunk:
                    raise IntegrityError(f"partition {partition} ends early", path=str(self.disk))
                digest.update(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done)
        finally:
            os.close(fd)
        return digest.hexdigest()

    def verify(self, slot: str) -> SlotInfo:
        record = self._read_record(slot)
        if record is None:
            raise IntegrityError(f"slot {slot} holds no complete install")
        info, regions, _ = record
        for region in regions:
            if self._hash_region(region.partition, region.size) != region.sha256:
                raise IntegrityError(
                    f"slot {slot}: partition {region.partition} ({region.name}) does not match "
                    "its record",
                    path=str(self.disk),
                )
        return info

    # -- writing -------------------------------------------------------------------------------

    def check_fits(self, slot: str, members: dict[str, int]) -> None:
        table = self.table()
        missing = [n for n in SLOT_IMAGE_MEMBERS if n not in members]
        extra = sorted(set(members) - {*SLOT_IMAGE_MEMBERS, HEALTH_FAIL_KNOB})
        if missing or extra:
            raise RefusedError(
                "not a slot image: needs exactly boot.vfat, root.ext4 and packages.txt"
                + (f" (missing {', '.join(missing)})" if missing else "")
                + (f" (unexpected {', '.join(extra)})" if extra else "")
            )
        for name, number in self._partitions(slot).items():
            size = table.get(number, str(self.disk)).size
            if members[name] > size:
                raise RefusedError(
                    f"{name} is {members[name]} bytes; partition {number} holds {size}"
                )
        if members["packages.txt"] > PACKAGES_MAX_BYTES:
            raise RefusedError(f"packages.txt is larger than {PACKAGES_MAX_BYTES} bytes")

    def bytes_needed(self, payload_size: int) -> int:
        return 0  # the image goes to its partitions (check_fits); only the record is local

    def discard_leftovers(self) -> None:
        self._staged.clear()
        self._staged_names.clear()

    def invalidate(self, slot: str) -> None:
        self._staged.pop(slot, None)
        self._staged_names.pop(slot, None)
        path = self._record_path(slot)
        if path.exists():
            remove_durably(path)

    def write(
        self, slot: str, header: BundleHeader, chunks: Iterable[bytes], progress: Progress
    ) -> None:
        self.refuse_unsafe_target(slot)
        table = self.table()
        targets = self._partitions(slot)
        total = header.manifest.payload_size
        digest = hashlib.sha256()
        seen = 0

        def counted() -> Iterator[bytes]:
            nonlocal seen
            for chunk in chunks:
                digest.update(chunk)
                seen += len(chunk)
                progress(min(seen, total))
                yield chunk

        reader = _ChunkReader(counted())
        regions: list[Region] = []
        members: dict[str, int] = {}
        try:
            self._write_members(reader, targets, table, regions, members)
        except tarfile.TarError as exc:
            raise IntegrityError(f"the slot image is not a readable tar ({exc})") from None
        reader.drain()
        self.check_fits(slot, members)
        if digest.hexdigest() != header.manifest.payload_sha256:
            raise IntegrityError("written bytes do not match the manifest")
        self._staged[slot] = regions
        self._staged_names[slot] = sorted(members)

    def _write_members(
        self,
        reader: _ChunkReader,
        targets: dict[str, int],
        table: PartitionTable,
        regions: list[Region],
        members: dict[str, int],
    ) -> None:
        with (
            self._open_disk(self.disk) as disk,
            tarfile.open(fileobj=reader, mode="r|") as tar,  # type: ignore[call-overload]
        ):
            for member in tar:
                members[member.name] = member.size
                if not member.isfile():
                    continue
                source = tar.extractfile(member)
                assert source is not None
                if member.name in ("packages.txt", HEALTH_FAIL_KNOB):
                    continue  # kept in the bundle; check_fits bounds packages.txt
                if member.name not in targets:
                    raise IntegrityError(f"unexpected member {member.name!r} in the slot image")
                number = targets[member.name]
                part = table.get(number, str(self.disk))
                if member.size > part.size:
                    raise IntegrityError(f"{member.name} does not fit partition {number}")
                regions.append(Region(member.name, number, member.size,
                                      self._stream(disk, source, part.start)))  # fmt: skip
            disk.flush()
            os.fsync(disk.fileno())

    @staticmethod
    def _stream(disk: BinaryIO, source: IO[bytes], start: int) -> str:
        digest = hashlib.sha256()
        disk.seek(start)
        while chunk := source.read(CHUNK_BYTES):
            digest.update(chunk)
            view = memoryview(chunk)
            while view:
                n = disk.write(view)
                if not n:
                    raise OSError("short write to the card")
                view = view[n:]
        return digest.hexdigest()

    def read_back(self, slot: str, manifest: Manifest, progress: Progress) -> None:
        regions = self._staged.get(slot)
        if regions is None:
            raise IntegrityError(f"slot {slot}: nothing was written in this run")
        done = 0
        for region in regions:

            def told(n: int, base: int = done) -> None:
                progress(base + n)

            got = self._hash_region(region.partition, region.size, told)
            done += region.size
            if got != region.sha256:
                raise IntegrityError(
                    f"read-back of partition {region.partition} ({region.name}) differs",
                    path=str(self.disk),
                )

    def _retarget_cmdline(self, slot: str) -> None:
        """Point the written boot partition's cmdline.txt at this card's root of ``slot``."""
        table = self.table()
        volume = FatVolume(self.disk, table.get(BOOT_PARTITION[slot]).start)
        try:
            text = volume.read_file("cmdline.txt")
        except FileNotFoundError:
            raise IntegrityError("boot.vfat has no cmdline.txt", path=str(self.disk)) from None
        if len(_CMDLINE_ROOT.findall(text)) != 1:
            raise IntegrityError("cmdline.txt must name exactly one root=PARTUUID=", path="")
        want = f"root=PARTUUID={table.partuuid(ROOT_PARTITION[slot])}".encode()
        new = _CMDLINE_ROOT.sub(want, text)
        if new != text:
            volume.rewrite_file("cmdline.txt", new)

    def install(self, slot: str, info: SlotInfo) -> None:
        regions = self._staged.pop(slot, None)
        if regions is None:
            raise IntegrityError(f"slot {slot}: nothing was written and read back in this run")
        self.refuse_unsafe_target(slot)
        self._retarget_cmdline(slot)
        final: list[Region] = []
        for region in regions:
            sha = self._hash_region(region.partition, region.size)
            final.append(Region(region.name, region.partition, region.size, sha))
        names = self._staged_names.pop(slot, list(SLOT_IMAGE_MEMBERS))
        self._write_record(info, final, names)

    def _write_record(self, info: SlotInfo, regions: list[Region], members: list[str]) -> None:
        path = self._record_path(info.slot)
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "format": PARTITION_SLOT_FORMAT,
            "info": info.to_dict(),
            "regions": [r.to_dict() for r in regions],
            "members": members,
        }
        write_atomic(path, canonical_json(record) + b"\n")

    def install_factory(self, template: SlotInfo) -> None:
        """Record what the image build put in slot ``template.slot``: its whole boot and root
        partitions, hashed on the card (the record's sha256 is the root partition's)."""
        table = self.table()
        regions = []
        for name, number in self._partitions(template.slot).items():
            size = table.get(number, str(self.disk)).size
            regions.append(Region(name, number, size, self._hash_region(number, size)))
        info = replace(template, sha256=regions[1].sha256, size=regions[1].size, kind="image")
        self._write_record(info, regions, list(SLOT_IMAGE_MEMBERS))
