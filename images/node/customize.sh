#!/bin/sh
# Runs inside the chroot of the freshly bootstrapped rootfs (images/bake).
set -eu

# The user-data brings its own units and configs for these: keep the
# packaged services off so nothing starts with Debian's defaults.
systemctl disable etcd.service haproxy.service keepalived.service
# containerd (/usr/local/lib/systemd/system, from images/gobuild) stays
# disabled: the user-data enables it. Whenever it starts, the baked images
# in /var/lib/paasgen/images are imported into its k8s.io namespace.
systemctl enable paasgen-preload-images.service
# cloud-init renders network-config for systemd-networkd.
systemctl enable systemd-networkd.service
# never wait forever for links that cloud-init did not configure
mkdir -p /etc/systemd/system/systemd-networkd-wait-online.service.d
cat > /etc/systemd/system/systemd-networkd-wait-online.service.d/paasgen.conf <<'UNIT'
[Service]
ExecStart=
ExecStart=/lib/systemd/systemd-networkd-wait-online --any --timeout=60
UNIT

# first-boot state: per-instance identity comes from the platform.
echo localhost > /etc/hostname
cat > /etc/hosts <<'HOSTS'
127.0.0.1 localhost
::1 localhost ip6-localhost ip6-loopback
HOSTS
rm -f /etc/ssh/ssh_host_*
: > /etc/machine-id
rm -f /var/lib/dbus/machine-id
rm -rf /var/lib/cloud/* /var/log/cloud-init*.log
apt-get clean
rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/debconf/*-old /var/lib/dpkg/*-old
find /var/log -type f -exec truncate -s 0 {} +
