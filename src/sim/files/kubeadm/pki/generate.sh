#!/bin/sh
# Regenerates the kubeadm profiles' certificates: real X.509, laid out and named as `kubeadm init` (v1.31)
# names them (cmd/kubeadm/app/phases/certs/certlist.go), for node cp1 (192.168.56.10). They are public
# material; the private keys made here are thrown away (the simulated .key files are made-up PEM, see
# src/sim/tree.rs). Deviation from kubeadm: the leaf certificates are valid for 10 years, not 1, so the
# simulator does not age into expired certificates.
set -eu
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/etcd"
days=3650
ca() { # NAME CN
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$tmp/$1.key" -out "$1.crt" -days "$days" \
    -subj "/CN=$2" -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,digitalSignature,keyEncipherment,keyCertSign" 2>/dev/null
}
leaf() { # NAME CA SUBJECT EXTKEYUSAGE [SAN]
  openssl req -newkey rsa:2048 -nodes -keyout "$tmp/leaf.key" -out "$tmp/leaf.csr" -subj "$3" 2>/dev/null
  ext="$tmp/ext"
  printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=%s\n' "$4" > "$ext"
  if [ -n "${5:-}" ]; then printf 'subjectAltName=%s\n' "$5" >> "$ext"; fi
  openssl x509 -req -in "$tmp/leaf.csr" -CA "$2.crt" -CAkey "$tmp/$2.key" -CAcreateserial -out "$1.crt" \
    -days "$days" -extfile "$ext" 2>/dev/null
}
ca ca kubernetes
ca front-proxy-ca front-proxy-ca
ca etcd/ca etcd-ca
leaf apiserver ca "/CN=kube-apiserver" serverAuth \
  "DNS:cp1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:10.96.0.1,IP:192.168.56.10"
leaf apiserver-kubelet-client ca "/O=kubeadm:cluster-admins/CN=kube-apiserver-kubelet-client" clientAuth
leaf front-proxy-client front-proxy-ca "/CN=front-proxy-client" clientAuth
leaf apiserver-etcd-client etcd/ca "/CN=kube-apiserver-etcd-client" clientAuth
leaf etcd/server etcd/ca "/CN=cp1" serverAuth,clientAuth "DNS:cp1,DNS:localhost,IP:192.168.56.10,IP:127.0.0.1,IP:0:0:0:0:0:0:0:1"
leaf etcd/peer etcd/ca "/CN=cp1" serverAuth,clientAuth "DNS:cp1,DNS:localhost,IP:192.168.56.10,IP:127.0.0.1,IP:0:0:0:0:0:0:0:1"
leaf etcd/healthcheck-client etcd/ca "/CN=kube-etcd-healthcheck-client" clientAuth
rm -f ./*.srl etcd/*.srl
# The cluster CA itself is made when the simulator starts (src/sim/pki.rs), so that it signs the kubelets'
# serving certificates: ca.crt only signs the leaves above here.
rm -f ca.crt
