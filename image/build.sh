#!/usr/bin/env bash
# `make image`: the unit's bootable arm64 SD-card image and its firmware slot image.
#
# Root filesystem from packages with mmdebstrap (archive in APT_SOURCES: Debian by default, or
# Raspberry Pi OS's), the project and its pinned aarch64 wheels installed natively (no pip under
# emulation), a tiny initramfs assembled natively (no initramfs-tools under emulation), then
# reproducible filesystem images: the same inputs give the same bytes (SOURCE_DATE_EPOCH, sorted
# inputs, fixed UUIDs, volume ids and hash seeds, every timestamp pinned). See docs/image.md.
#
# It also installs what `make image-test` needs (qemu-system-arm, device-tree-compiler).
# Outputs (OUT, default build/image):
#   slot/boot.vfat slot/root.ext4 slot/packages.txt   the slot image `bwc fw build` wraps
#   bwc-sdcard.img                                    the whole card (MBR; layout in docs/unit-layout.md)
#   SHA256SUMS                                        of the files above
#   build-times.txt                                   wall time of each phase
set -euo pipefail
cd "$(dirname "$0")/.."
export LC_ALL=C.UTF-8 TZ=UTC

# ---------------------------------------------------------------- parameters (environment)
SUITE=${SUITE:-bookworm}
if [ -z "${APT_SOURCES:-}" ]; then
  # Default: the Debian archive this build machine's apt already uses (its first non-security
  # source), so the recipe names no mirror; an agency sets APT_SOURCES to its own archive(s).
  mirror=$(bash scripts/apt-mirror.sh || true)
  [ -n "$mirror" ] || { echo "image/build.sh: set APT_SOURCES (no apt source found on this machine)" >&2; exit 2; }
  APT_SOURCES="deb $mirror $SUITE main non-free-firmware"
fi
EXTRA_PACKAGES=${EXTRA_PACKAGES:-}            # comma-separated, e.g. python3-picamera2 on RPi OS
ROOTFS_EPOCH=${ROOTFS_EPOCH:-1767225600}      # mmdebstrap's SOURCE_DATE_EPOCH (2026-01-01)
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo "$ROOTFS_EPOCH")}
DISK_ID=${DISK_ID:-b0c0ca5e}                  # MBR disk signature: PARTUUIDs are $DISK_ID-NN
BWC_UID=${BWC_UID:-900}                       # the service user's fixed uid/gid
OUT=${OUT:-build/image}
CACHE=${IMAGE_CACHE:-.image-cache}
BOOT_MIB=256; BOOTSEL_MIB=64; ROOT_MIB=${ROOT_MIB:-1536}; DATA_MIB=${DATA_MIB:-512}
export SOURCE_DATE_EPOCH
ROOT_UUID=${ROOT_UUID:-5e1f0b3c-0000-4000-8000-00000000b0c0}
HASH_SEED=${HASH_SEED:-5e1f0b3c-0000-4000-8000-00000000b0c1}
DATA_UUID=${DATA_UUID:-5e1f0b3c-0000-4000-8000-00000000b0c7}
INITRAMFS_MODULES="virtio_mmio virtio_pci virtio_blk sdhci_iproc sdhci_pltfm bcm2835 mmc_block crc32c_generic ext4"

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
phase_start=$(date +%s)
TIMES=""
phase() {  # phase NAME: close the previous phase's timer and name the next
  local now; now=$(date +%s)
  [ -n "${PHASE:-}" ] && TIMES+="$PHASE $((now - phase_start)) s"$'\n'
  PHASE=$1; phase_start=$now
  echo "== $1" >&2
}

# ---------------------------------------------------------------- tools
phase tools
need_pkgs=""
for pair in mmdebstrap:mmdebstrap qemu-aarch64-static:qemu-user-static update-binfmts:binfmt-support \
            mkfs.vfat:dosfstools mcopy:mtools mke2fs:e2fsprogs debugfs:e2fsprogs sfdisk:fdisk \
            arch-test:arch-test qemu-system-aarch64:qemu-system-arm \
            dtc:device-tree-compiler; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin:/sbin command -v "${pair%%:*}" >/dev/null 2>&1 \
    || need_pkgs+=" ${pair#*:}"
done
if [ -n "$need_pkgs" ]; then
  if command -v apt-get >/dev/null && { [ -z "$SUDO" ] || sudo -n true 2>/dev/null; }; then
    echo "image: installing$need_pkgs" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends $need_pkgs >&2
  else
    echo "image: missing Debian packages:$need_pkgs (apt-get install them, as root)" >&2
    exit 2
  fi
fi
export PATH=$PATH:/usr/sbin:/sbin
if ! arch-test arm64 >/dev/null 2>&1; then
  # Containers often lack the binfmt_misc mount that runs arm64 binaries through qemu-user.
  [ -e /proc/sys/fs/binfmt_misc/status ] || $SUDO mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || true
  $SUDO update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
  arch-test arm64 >/dev/null || { echo "image: this machine cannot run arm64 binaries (qemu-user-static + binfmt_misc)" >&2; exit 2; }
fi
[ -z "$SUDO" ] || { echo "image: run as root (mmdebstrap root mode, chroot, file ownership)" >&2; exit 2; }

# The host's CPython must be the unit's minor version: it compiles the unit's bytecode.
PY=${PYTHON:-python3}
"$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
  || { echo "image: PYTHON=$PY is not Python 3.11 (the unit's, Debian bookworm's)" >&2; exit 2; }
mkdir -p "$CACHE" "$OUT"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/bwc-image.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# ---------------------------------------------------------------- root filesystem (cached)
phase rootfs
PACKAGES=$(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' image/debian-packages.list | sort | paste -sd, -)
[ -z "$EXTRA_PACKAGES" ] || PACKAGES="$PACKAGES,$EXTRA_PACKAGES"
# The kernel package's postinst would build an initramfs under emulation (most of a 33-minute
# build); divert update-initramfs before anything is configured: our initramfs is made natively.
ESSENTIAL_HOOK='chroot "$1" dpkg-divert --quiet --local --rename --add /usr/sbin/update-initramfs && ln -s /bin/true "$1/usr/sbin/update-initramfs"'
MM_ARGS=(--format=tar --arch=arm64 --variant=minbase --include="$PACKAGES"
  --essential-hook="$ESSENTIAL_HOOK"
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*'
  --dpkgopt='path-exclude=/usr/share/info/*' --dpkgopt='path-exclude=/usr/share/doc/*'
  --dpkgopt='path-include=/usr/share/doc/*/copyright')
IFS='|' read -r -a SOURCES <<<"$APT_SOURCES"
key=$(printf '%s\n' "$SUITE" "${SOURCES[@]}" "${MM_ARGS[@]}" "$ROOTFS_EPOCH" | sha256sum | cut -c1-16)
ROOTFS_TAR="$CACHE/rootfs-$SUITE-arm64-$key.tar"
if [ ! -s "$ROOTFS_TAR" ]; then
  echo "image: mmdebstrap $SUITE arm64 (cached as $ROOTFS_TAR)" >&2
  SOURCE_DATE_EPOCH=$ROOTFS_EPOCH nice -n 19 mmdebstrap --mode=root "${MM_ARGS[@]}" \
    "$SUITE" "$ROOTFS_TAR.part" "${SOURCES[@]}" >&2
  mv "$ROOTFS_TAR.part" "$ROOTFS_TAR"
fi
ROOT="$WORK/root"
mkdir "$ROOT"
tar -C "$ROOT" --numeric-owner -xpf "$ROOTFS_TAR"

# ---------------------------------------------------------------- the project and its wheels
phase python
WHEELS="$CACHE/wheels-aarch64-$(sha256sum image/requirements-arm64.txt | cut -c1-16)"
PLATFORMS=(--platform manylinux_2_36_aarch64 --platform manylinux_2_34_aarch64
  --platform manylinux_2_31_aarch64 --platform manylinux_2_28_aarch64
  --platform manylinux_2_17_aarch64 --platform manylinux2014_aarch64)
if [ ! -d "$WHEELS" ]; then
  nice -n 19 "$PY" -m pip download --quiet --no-deps --require-hashes --only-binary=:all: \
    "${PLATFORMS[@]}" --python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none \
    --dest "$WHEELS.part" -r image/requirements-arm64.txt
  mv "$WHEELS.part" "$WHEELS"
fi
# The project itself: a wheel of exactly the tracked (and modified) source files.
SRC="$WORK/src"
mkdir "$SRC"
git ls-files -z --cached --others --exclude-standard | grep -z -E '^(pyproject.toml|README.md|(hal|evidence|offload|recorder|simulator|firmware)/)' \
  | xargs -0 cp --parents -t "$SRC"
"$PY" -m pip wheel --quiet --no-deps --wheel-dir "$WORK/project-wheel" "$SRC" >&2
VENV=/opt/bwc/.venv
SITE="$ROOT$VENV/lib/python3.11/site-packages"
mkdir -p "$SITE" "$ROOT$VENV/bin"
"$PY" -m pip install --quiet --no-deps --no-index --no-compile --only-binary=:all: \
  "${PLATFORMS[@]}" --python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none \
  --target "$SITE" "$WHEELS"/*.whl "$WORK"/project-wheel/*.whl
# pip's scripts carry this machine's interpreter; the unit's are written below. direct_url.json
# (and its line in RECORD) names this machine's temporary paths.
rm -rf "$SITE/bin"
find "$SITE" -name direct_url.json -delete
sed -i '/\/direct_url\.json,/d' "$SITE"/*.dist-info/RECORD
printf 'home = /usr/bin\ninclude-system-site-packages = false\nversion = 3.11\n' >"$ROOT$VENV/pyvenv.cfg"
ln -s /usr/bin/python3 "$ROOT$VENV/bin/python"
ln -s python "$ROOT$VENV/bin/python3"
cat >"$ROOT$VENV/bin/bwc" <<'EOF'
#!/opt/bwc/.venv/bin/python
import sys

from firmware.cli import main

sys.exit(main())
EOF
chmod 755 "$ROOT$VENV/bin/bwc"
mkdir -p "$ROOT/opt/bwc/docs" "$ROOT/opt/bwc/configs"
cp docs/*.md "$ROOT/opt/bwc/docs/"
cp configs/*.toml "$ROOT/opt/bwc/configs/"
# The root is read-only at run time, so Python cannot cache bytecode there: compile it now, with
# hash-based .pyc files (no source mtimes inside), sorted and single-threaded for stable bytes.
# -d: the unit's own path in co_filename (tracebacks), not this machine's temporary one.
"$PY" -m compileall -q -j 1 --invalidation-mode unchecked-hash -d "$VENV/lib/python3.11/site-packages" \
  "$SITE" >/dev/null

# ---------------------------------------------------------------- system configuration
phase configure
# The unit's systemd units (recorder, boot-selection root helper, try-boot), enabled as their
# [Install] sections say: what `systemctl enable` would do, done natively.
for unit in firmware/systemd/*; do
  name=$(basename "$unit")
  install -m 0644 "$unit" "$ROOT/etc/systemd/system/$name"
  for target in $(sed -n 's/^WantedBy=//p' "$unit"); do
    mkdir -p "$ROOT/etc/systemd/system/$target.wants"
    ln -sf "/etc/systemd/system/$name" "$ROOT/etc/systemd/system/$target.wants/$name"
  done
done
# The service user: fixed ids, no login, in the groups the hardware needs (gpio is not a Debian
# group: create it). useradd/groupadd run under qemu-user; SOURCE_DATE_EPOCH fixes /etc/shadow's
# "last changed" day.
chroot "$ROOT" sh -ec "
  getent group gpio >/dev/null || groupadd --system gpio
  groupadd --system --gid $BWC_UID bwc
  useradd --system --uid $BWC_UID --gid bwc --groups video,gpio,audio,dialout \
    --home-dir /var/lib/bwc --no-create-home --shell /usr/sbin/nologin bwc
  usermod --lock root
" >&2
rm -f "$ROOT"/etc/*- "$ROOT"/var/cache/debconf/*-old "$ROOT"/var/lib/dpkg/*-old
echo bwc >"$ROOT/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tbwc\n' >"$ROOT/etc/hosts"
: >"$ROOT/etc/machine-id"          # empty: systemd makes a transient one on the read-only root
# raspi-firmware's kernel hook fills /boot/firmware inside the chroot; the boot slots are built below.
rm -rf "$ROOT/boot/firmware"
mkdir -p "$ROOT/var/lib/bwc" "$ROOT/boot/firmware"
cat >"$ROOT/etc/fstab" <<EOF
# The root is mounted read-only by the initramfs (slot A = PARTUUID $DISK_ID-05, B = -06).
PARTUUID=$DISK_ID-07  /var/lib/bwc  ext4   defaults,noatime,nodev,nosuid,noexec  0 2
tmpfs                 /tmp          tmpfs  mode=1777,nosuid,nodev                 0 0
tmpfs                 /var/tmp      tmpfs  mode=1777,nosuid,nodev                 0 0
tmpfs                 /var/log      tmpfs  mode=0755,nosuid,nodev                 0 0
EOF
mkdir -p "$ROOT/etc/systemd/journald.conf.d"
printf '[Journal]\nStorage=volatile\n' >"$ROOT/etc/systemd/journald.conf.d/bwc.conf"
# Nothing on the unit may write its root: timers that would try are not wanted.
for unit in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer e2scrub_reap.service; do
  ln -sf /dev/null "$ROOT/etc/systemd/system/$unit"
done

# packages.txt: every Debian package and every Python distribution, with its version.
{
  dpkg-query --admindir="$ROOT/var/lib/dpkg" -W -f='deb ${Package} ${Version} ${Architecture}\n'
  for meta in "$SITE"/*.dist-info/METADATA; do
    awk -F': ' '/^Name: /{n=$2} /^Version: /{v=$2} END{print "python " n " " v}' "$meta"
  done
} | LC_ALL=C sort >"$WORK/packages.txt"

# ---------------------------------------------------------------- boot partition files
phase boot
KVER=$(basename "$(ls -d "$ROOT"/lib/modules/* | sort | tail -1)")
BOOT="$WORK/boot"
mkdir "$BOOT"
cp "$ROOT/boot/vmlinuz-$KVER" "$BOOT/vmlinuz"
"$PY" image/initramfs.py "$ROOT" "$KVER" image/initramfs-init "$BOOT/initrd.img" "$SOURCE_DATE_EPOCH" $INITRAMFS_MODULES
cp "$ROOT"/usr/lib/raspi-firmware/* "$BOOT/"
for dtb in bcm2837-rpi-3-b bcm2837-rpi-3-b-plus bcm2837-rpi-3-a-plus bcm2837-rpi-zero-2-w \
           bcm2837-rpi-cm3-io3 bcm2711-rpi-4-b bcm2711-rpi-400 bcm2711-rpi-cm4-io; do
  f="$ROOT/usr/lib/linux-image-$KVER/broadcom/$dtb.dtb"
  [ -f "$f" ] && cp "$f" "$BOOT/"
done
cp image/config.txt "$BOOT/config.txt"
# Slot A's; the slot writer rewrites "-05" to "-06" in place when it writes this image to slot B.
echo "console=tty1 root=PARTUUID=$DISK_ID-05 rootfstype=ext4 ro rootwait fsck.repair=yes quiet" >"$BOOT/cmdline.txt"

# ---------------------------------------------------------------- reproducible filesystem images
phase images
SLOT="$WORK/slot"
mkdir "$SLOT"
find "$ROOT" "$BOOT" -newermt "@$SOURCE_DATE_EPOCH" -print0 | xargs -0r touch --no-dereference --date="@$SOURCE_DATE_EPOCH"
mkfs.vfat -C -F 32 --invariant -i "${DISK_ID:0:4}00a2" -n BOOT_A "$SLOT/boot.vfat" $((BOOT_MIB * 1024)) >/dev/null
# Sorted, one mcopy: directory entries and clusters are allocated in this order.
mapfile -t boot_files < <(cd "$BOOT" && ls | LC_ALL=C sort)
(cd "$BOOT" && mcopy -m -i "$SLOT/boot.vfat" "${boot_files[@]}" ::/)
mdir -i "$SLOT/boot.vfat" ::/ >/dev/null
ROOT_KIB=$(du -sk --apparent-size "$ROOT" | cut -f1)
ROOT_FS_MIB=$(( (ROOT_KIB * 13 / 10) / 1024 + 64 ))
[ "$ROOT_FS_MIB" -le "$ROOT_MIB" ] || { echo "image: root needs $ROOT_FS_MIB MiB > ROOT_MIB=$ROOT_MIB" >&2; exit 1; }
E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH mke2fs -q -t ext4 -b 4096 -I 256 -d "$ROOT" -L root \
  -U "$ROOT_UUID" -E "root_owner=0:0,hash_seed=$HASH_SEED,nodiscard" -O ^has_journal \
  "$SLOT/root.ext4" "${ROOT_FS_MIB}M"
# mke2fs -d copies each file's ctime and atime from this machine (e2fsprogs 1.47.0 has no
# SOURCE_DATE_EPOCH): pin every inode's times, and the reserved inodes', with debugfs.
{
  (cd "$ROOT" && find . -print | LC_ALL=C sort) | sed -e 's|^\.||' -e 's|^$|/|' \
    | awk -v t="@$SOURCE_DATE_EPOCH" '{gsub(/"/, "\\\""); printf "sif \"%s\" ctime %s\nsif \"%s\" atime %s\n", $0, t, $0, t}'
  for n in $(seq 1 11); do for f in ctime mtime atime crtime; do echo "sif <$n> $f @$SOURCE_DATE_EPOCH"; done; done
} >"$WORK/times.debugfs"
E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH debugfs -w -f "$WORK/times.debugfs" "$SLOT/root.ext4" >/dev/null 2>"$WORK/debugfs.log"
if grep -v '^debugfs [0-9]' "$WORK/debugfs.log" | grep -q .; then
  echo "image: debugfs could not pin times:" >&2; head -5 "$WORK/debugfs.log" >&2; exit 1
fi
e2fsck -fn "$SLOT/root.ext4" >/dev/null 2>&1 || { echo "image: root.ext4 fails e2fsck" >&2; exit 1; }
cp "$WORK/packages.txt" "$SLOT/packages.txt"
touch --date="@$SOURCE_DATE_EPOCH" "$SLOT"/*

# ---------------------------------------------------------------- the SD card
phase sdcard
IMG="$WORK/bwc-sdcard.img"
# p1 at 4 MiB (erase-block aligned), p2, p3, extended p4 holding p5 p6 p7 (1 MiB gaps for EBRs).
S=$((4 * 2048)); M=2048
P1=$S; P2=$((P1 + BOOTSEL_MIB * M)); P3=$((P2 + BOOT_MIB * M)); P4=$((P3 + BOOT_MIB * M))
P5=$((P4 + M)); P6=$((P5 + ROOT_MIB * M + M)); P7=$((P6 + ROOT_MIB * M + M))
END=$((P7 + DATA_MIB * M))
truncate -s $((END * 512)) "$IMG"
sfdisk --quiet --no-reread --no-tell-kernel "$IMG" <<EOF
label: dos
label-id: 0x$DISK_ID
unit: sectors
start=$P1, size=$((BOOTSEL_MIB * M)), type=c
start=$P2, size=$((BOOT_MIB * M)), type=c
start=$P3, size=$((BOOT_MIB * M)), type=c
start=$P4, size=$((END - P4)), type=5
start=$P5, size=$((ROOT_MIB * M)), type=83
start=$P6, size=$((ROOT_MIB * M)), type=83
start=$P7, size=$((DATA_MIB * M)), type=83
EOF
# p1: only autoboot.txt, slot A primary, B on try-boot (the exact 63 bytes of docs/unit-layout.md).
mkfs.vfat -C -F 32 --invariant -i "${DISK_ID:0:4}00a1" -n BOOTSEL "$WORK/bootsel.vfat" $((BOOTSEL_MIB * 1024)) >/dev/null
printf '[all]\ntryboot_a_b=1\nboot_partition=2\n[tryboot]\nboot_partition=3\n' >"$WORK/autoboot.txt"
touch --date="@$SOURCE_DATE_EPOCH" "$WORK/autoboot.txt"
mcopy -m -i "$WORK/bootsel.vfat" "$WORK/autoboot.txt" ::/
mkfs.vfat -C -F 32 --invariant -i "${DISK_ID:0:4}00a3" -n BOOT_B "$WORK/bootb.vfat" $((BOOT_MIB * 1024)) >/dev/null
mkdir -p "$WORK/data"
E2FSPROGS_FAKE_TIME=$SOURCE_DATE_EPOCH mke2fs -q -t ext4 -b 4096 -L data -U "$DATA_UUID" \
  -E "root_owner=$BWC_UID:$BWC_UID,hash_seed=$HASH_SEED,nodiscard" "$WORK/data.ext4" "${DATA_MIB}M"
debugfs -w -R "sif <2> mode 040700" "$WORK/data.ext4" >/dev/null 2>&1
put() { dd if="$1" of="$IMG" bs=1M seek=$(($2 / M)) conv=notrunc,sparse status=none; }
put "$WORK/bootsel.vfat" $P1
put "$SLOT/boot.vfat" $P2
put "$WORK/bootb.vfat" $P3
put "$SLOT/root.ext4" $P5
put "$WORK/data.ext4" $P7
# Slot B starts empty (boot-path's slot state says so); the first update fills it.

# ---------------------------------------------------------------- publish
phase publish
rm -rf "$OUT/slot"
mkdir -p "$OUT/slot"
cp "$SLOT"/* "$OUT/slot/"
cp --sparse=always "$IMG" "$OUT/bwc-sdcard.img"
cp "$BOOT/vmlinuz" "$BOOT/initrd.img" "$OUT/"
# The slot image is what must reproduce; hashing the 4 GiB card too would cost minutes.
(cd "$OUT" && sha256sum slot/boot.vfat slot/root.ext4 slot/packages.txt >SHA256SUMS)
phase done
{
  echo "kernel $KVER"
  echo "disk_id $DISK_ID"
  echo "source_date_epoch $SOURCE_DATE_EPOCH"
  printf '%s' "$TIMES"
} >"$OUT/build-info.txt"
cat "$OUT/SHA256SUMS" "$OUT/build-info.txt"
