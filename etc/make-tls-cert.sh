#!/bin/sh
# Make the certificate and key that etc/config-tls.json names, for trying HTTPS on one machine:
#
#   sh etc/make-tls-cert.sh [DIR] [NAME...]
#
# writes DIR/server.crt and DIR/server.key (DIR defaults to etc/tls, where the example looks when
# zotpy runs from the checkout). The certificate is self-signed, valid 365 days, for localhost,
# 127.0.0.1 and ::1 plus each NAME (an IP address or a host name). Clients trust it by being given
# the certificate itself: curl --cacert etc/tls/server.crt, skopeo --cert-dir (a directory holding
# it renamed ca.crt), Python's ssl.create_default_context(cafile=...). For production, use a
# certificate from your CA: zotpy serves whatever http.tls.cert and http.tls.key name.
# (-nodes rather than OpenSSL 3's -noenc, so OpenSSL 1.1.1 runs it too.)
set -eu

dir="${1:-etc/tls}"
[ "$#" -gt 0 ] && shift
names="DNS:localhost,IP:127.0.0.1,IP:::1"
for name in "$@"; do
  case "$name" in
    *[!0-9.:a-fA-F]*) names="$names,DNS:$name" ;;   # a character no IP address has
    *:*) names="$names,IP:$name" ;;                  # IPv6
    *[!0-9.]*) names="$names,DNS:$name" ;;
    *) names="$names,IP:$name" ;;                    # IPv4
  esac
done

mkdir -p "$dir"
umask 077   # the key is readable by its owner only
# openssl's progress dots are noise; its errors are shown if it fails
if ! output="$(openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 \
  -subj "/CN=${1:-localhost}" -addext "subjectAltName=$names" \
  -addext "keyUsage=critical,digitalSignature,keyCertSign" -addext "extendedKeyUsage=serverAuth" \
  -keyout "$dir/server.key" -out "$dir/server.crt" 2>&1)"; then
  echo "$output" >&2
  exit 1
fi
chmod 0644 "$dir/server.crt"
echo "wrote $dir/server.crt and $dir/server.key for $names"
