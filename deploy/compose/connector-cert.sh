#!/bin/sh
# The connector's TLS certificate, issued by step-ca and kept renewed, plus step-ca's root for the
# connector's mTLS check. Runs in the `tls` service as uid 1000 (step-ca's user, which may read the
# root) with gid 10001 (the connector's group, which may read what this writes).
set -eu
dir=/home/step/connector-tls
root=/home/step/certs/root_ca.crt
ca_url=https://step-ca:9000

mkdir -p "$dir"
chmod 0750 "$dir"
# A new certificate at every start: one left over from a long stop may have expired already.
step ca certificate connector "$dir/tls.crt" "$dir/tls.key" --san connector \
  --kty EC --not-after 24h --force \
  --provisioner admin --provisioner-password-file /run/secrets/admin-password \
  --ca-url "$ca_url" --root "$root"
cp "$root" "$dir/root_ca.crt"
chmod 0640 "$dir/tls.crt" "$dir/tls.key" "$dir/root_ca.crt"
# Renew at two thirds of the lifetime; the connector re-reads the files (server.cert_reload_interval).
exec step ca renew --daemon --exec "chmod 0640 $dir/tls.crt $dir/tls.key" \
  --ca-url "$ca_url" --root "$root" "$dir/tls.crt" "$dir/tls.key"
