#!/usr/bin/env bash
# tests/lab/smoke-out.sh OUT — write a fake render output (manifest.json + tiny
# #cloud-config per node) to exercise scripts/lab without the Rust render.
set -euo pipefail
out=${1:?usage: smoke-out.sh OUT}
mkdir -p "$out"
nodes="gw-1 gateway 192.168.0.2 203.0.113.11
gw-2 gateway 192.168.0.3 203.0.113.12
etcd-1 etcd 192.168.0.10 -
etcd-2 etcd 192.168.0.11 -
etcd-3 etcd 192.168.0.12 -
master-1 master 192.168.0.20 -
master-2 master 192.168.0.21 -
master-3 master 192.168.0.22 -
worker-1 worker 192.168.0.30 -
worker-2 worker 192.168.0.31 -"
entries=()
while read -r name role priv pub; do
  cat > "$out/$name.yaml" <<YAML
#cloud-config
write_files:
  - path: /etc/paasgen-smoke
    content: |
      node=$name role=$role
runcmd:
  - [sh, -c, "ip -4 -o addr > /run/smoke-addrs; ip route > /run/smoke-routes"]
YAML
  sha=$(sha256sum < "$out/$name.yaml" | cut -d' ' -f1)
  bytes=$(stat -c %s "$out/$name.yaml")
  [ "$pub" = - ] && pubj=null || pubj="\"$pub\""
  entries+=("{\"name\":\"$name\",\"role\":\"$role\",\"private_ip\":\"$priv\",\"public_ip\":$pubj,\"user_data\":\"$name.yaml\",\"sha256\":\"$sha\",\"bytes\":$bytes}")
done <<< "$nodes"
joined=$(IFS=,; echo "${entries[*]}")
cat > "$out/manifest.json" <<JSON
{"cluster":"smoke",
 "network":{"private_cidr":"192.168.0.0/24","private_interface":"ens3","private_vip":"192.168.0.5",
            "public_cidr":"203.0.113.0/24","public_gateway":"203.0.113.1","public_interface":"ens4","public_vip":"203.0.113.10",
            "api_port":6443,"ingress_http_node_port":30080,"ingress_https_node_port":30443},
 "nodes":[$joined]}
JSON
echo "$out"
