#!/usr/bin/env bash
# A single-node Ceph (one monitor, one OSD, one RADOS Gateway) serving S3 for the offload tests.
# No mgr, no systemd, no containers; every file lives under DIR. Needs root and the Debian packages
# ceph-mon ceph-osd radosgw ceph-common curl openssl uuid-runtime (.ci/run installs them).
#
# Usage: scripts/ceph-up.sh DIR [memstore|bluestore]
# Env:   RGW_PORT (HTTP, default 7480), RGW_SSL_PORT (HTTPS, default 7443; empty disables it),
#        CEPH_MON_PORT (default 3300), S3_ACCESS_KEY / S3_SECRET_KEY (the test user's keys).
# Writes DIR/env.sh with the variables the tests read (BWC_TEST_S3_ENDPOINT, AWS_*), and
# DIR/rgw.crt (the CA bundle for HTTPS). scripts/ceph-down.sh DIR stops exactly these daemons.
set -euo pipefail
D=${1:?usage: ceph-up.sh DIR [memstore|bluestore]}
STORE=${2:-memstore}
RGW_PORT=${RGW_PORT:-7480}
RGW_SSL_PORT=${RGW_SSL_PORT-7443}
MON_PORT=${CEPH_MON_PORT:-3300}
ACCESS=${S3_ACCESS_KEY:-CIACCESSKEY}
SECRET=${S3_SECRET_KEY:-CISECRETKEY0123456789}
case "$STORE" in memstore|bluestore) ;; *) echo "ceph-up.sh: store must be memstore or bluestore" >&2; exit 2;; esac
for tool in ceph-mon ceph-osd radosgw ceph-authtool monmaptool radosgw-admin ceph curl openssl uuidgen; do
  command -v "$tool" >/dev/null || { echo "ceph-up.sh: $tool not found (install ceph-mon ceph-osd radosgw ceph-common curl openssl uuid-runtime)" >&2; exit 2; }
done
rm -rf "$D"; mkdir -p "$D"/{mon,osd,run,log,rgw}
D=$(cd "$D" && pwd)
FSID=$(uuidgen)
CONF=$D/ceph.conf
SSL=""
if [ -n "$RGW_SSL_PORT" ]; then
  # A throwaway self-signed certificate; the certificate itself is the CA bundle clients trust.
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$D/rgw.key" -out "$D/rgw.crt" -days 7 \
    -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" 2>/dev/null
  cat "$D/rgw.crt" "$D/rgw.key" > "$D/rgw.pem"
  SSL=" ssl_endpoint=127.0.0.1:$RGW_SSL_PORT ssl_certificate=$D/rgw.pem"
fi
cat > "$CONF" <<CONF
[global]
fsid = $FSID
mon host = v2:127.0.0.1:$MON_PORT
public network = 127.0.0.0/8
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
keyring = $D/keyring
run dir = $D/run
admin socket = $D/run/\$name.asok
log file = $D/log/\$name.log
pid file = $D/run/\$name.pid
mon data = $D/mon/\$name
osd data = $D/osd/\$name
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd crush chooseleaf type = 0
mon allow pool size one = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
mon data avail warn = 1
mon data avail crit = 0
mon warn on insecure global id reclaim allowed = false
osd objectstore = $STORE
memstore device bytes = 2147483648
bluestore block create = true
bluestore block size = 4294967296
osd memory target = 939524096
bluestore cache autotune = false
bluestore cache size = 134217728
ms bind ipv6 = false
[client.rgw.ci]
rgw frontends = beast endpoint=127.0.0.1:$RGW_PORT$SSL
rgw data = $D/rgw
rgw dns name = localhost
log file = $D/log/rgw.log
CONF
export CEPH_CONF=$CONF
ceph-authtool --create-keyring "$D/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
ceph-authtool "$D/keyring" --gen-key -n client.admin --cap mon 'allow *' --cap osd 'allow *' \
  --cap mgr 'allow *' >/dev/null
ceph-authtool "$D/keyring" --gen-key -n client.rgw.ci --cap mon 'allow rw' --cap osd 'allow rwx' >/dev/null
monmaptool --create --addv a "[v2:127.0.0.1:$MON_PORT]" --fsid "$FSID" "$D/monmap" >/dev/null
ceph-mon --mkfs -i a --monmap "$D/monmap" --keyring "$D/keyring" -c "$CONF"
ceph-mon -i a -c "$CONF"
OSD_UUID=$(uuidgen)
OSD_SECRET=$(ceph-authtool --gen-print-key)
ID=$(echo "{\"cephx_secret\": \"$OSD_SECRET\"}" | ceph osd new "$OSD_UUID" -i - -n client.admin)
mkdir -p "$D/osd/osd.$ID"
ceph-authtool --create-keyring "$D/osd/osd.$ID/keyring" --name "osd.$ID" --add-key "$OSD_SECRET" >/dev/null
ceph-osd -i "$ID" --mkfs --osd-uuid "$OSD_UUID" -c "$CONF" --keyring "$D/osd/osd.$ID/keyring" >/dev/null 2>&1
ceph-osd -i "$ID" -c "$CONF" --keyring "$D/osd/osd.$ID/keyring"
for _ in $(seq 60); do ceph osd stat 2>/dev/null | grep -q '1 up' && break; sleep 1; done
ceph osd stat | grep -q '1 up' || { echo "ceph-up.sh: OSD did not come up" >&2; tail -30 "$D/log/osd.$ID.log" >&2; exit 1; }
radosgw -n client.rgw.ci -c "$CONF" --keyring "$D/keyring"
for _ in $(seq 120); do curl -s -o /dev/null "http://127.0.0.1:$RGW_PORT/" && break; sleep 1; done
curl -sf -o /dev/null "http://127.0.0.1:$RGW_PORT/" || { echo "ceph-up.sh: radosgw did not come up" >&2; tail -30 "$D/log/rgw.log" >&2; exit 1; }
radosgw-admin -c "$CONF" -n client.admin user create --uid=ci --display-name=ci \
  --access-key="$ACCESS" --secret-key="$SECRET" >/dev/null
if [ -n "$RGW_SSL_PORT" ]; then
  ENDPOINT="https://127.0.0.1:$RGW_SSL_PORT"; CA_LINE="export AWS_CA_BUNDLE=$D/rgw.crt"
else
  ENDPOINT="http://127.0.0.1:$RGW_PORT"; CA_LINE=""
fi
cat > "$D/env.sh" <<ENV
export BWC_TEST_S3_ENDPOINT=$ENDPOINT
export AWS_ENDPOINT_URL=$ENDPOINT
export BWC_TEST_S3_HTTP_ENDPOINT=http://127.0.0.1:$RGW_PORT
export AWS_ACCESS_KEY_ID=$ACCESS
export AWS_SECRET_ACCESS_KEY=$SECRET
export AWS_DEFAULT_REGION=us-east-1
$CA_LINE
ENV
echo "ceph-up.sh: S3 at $ENDPOINT (and http://127.0.0.1:$RGW_PORT); source $D/env.sh for the test env"
