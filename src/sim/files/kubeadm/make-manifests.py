#!/usr/bin/env python3
"""Writes the static Pod manifests of a kubeadm profile from its ps capture, so that each manifest's command is
exactly the argv the capture shows (kubeadm v1.31's layout: cmd/kubeadm/app/phases/controlplane/manifests.go,
cmd/kubeadm/app/phases/etcd/local.go, cmd/kubeadm/app/util/staticpod/utils.go; volumes and probes as kubeadm
sets them on Ubuntu). Usage: make-manifests.py CAPTURE OUTDIR [hardened]"""
import re
import sys

capture, outdir = sys.argv[1], sys.argv[2]
hardened = len(sys.argv) > 3 and sys.argv[3] == "hardened"
VERSION = "v1.31.2"
lines = open(capture).read().splitlines()


def argv(program):
    for line in lines:
        fields = line.split(None, 7)
        if len(fields) == 8 and fields[7].split(" ")[0] == program:
            return fields[7].split(" ")
    raise SystemExit(f"{capture}: no {program}")


def host_path(name, path, kind):
    return f"  - hostPath:\n      path: {path}\n      type: {kind}\n    name: {name}\n"


def mount(name, path, read_only):
    return f"    - mountPath: {path}\n      name: {name}\n" + ("      readOnly: true\n" if read_only else "")


def probe(kind, host, path, port, scheme, delay, period=10, failure=8, timeout=15):
    out = f"    {kind}:\n      failureThreshold: {failure}\n      httpGet:\n"
    if host:
        out += f"        host: {host}\n"
    out += f"        path: {path}\n        port: {port}\n        scheme: {scheme}\n"
    out += f"      initialDelaySeconds: {delay}\n      periodSeconds: {period}\n      timeoutSeconds: {timeout}\n"
    return out


CA_VOLUMES = [
    ("ca-certs", "/etc/ssl/certs", "DirectoryOrCreate", True),
    ("etc-ca-certificates", "/etc/ca-certificates", "DirectoryOrCreate", True),
    ("k8s-certs", "/etc/kubernetes/pki", "DirectoryOrCreate", True),
    ("usr-local-share-ca-certificates", "/usr/local/share/ca-certificates", "DirectoryOrCreate", True),
    ("usr-share-ca-certificates", "/usr/share/ca-certificates", "DirectoryOrCreate", True),
]


def pod(name, annotations, command, image, probes, cpu, memory, volumes):
    out = "apiVersion: v1\nkind: Pod\nmetadata:\n"
    if annotations:
        out += "  annotations:\n" + "".join(f"    {k}: {v}\n" for k, v in annotations)
    out += f"  creationTimestamp: null\n  labels:\n    component: {name}\n    tier: control-plane\n"
    out += f"  name: {name}\n  namespace: kube-system\nspec:\n  containers:\n  - command:\n"
    out += "".join(f"    - {a}\n" for a in command)
    out += f"    image: {image}\n    imagePullPolicy: IfNotPresent\n"
    out += probes["liveness"]
    out += f"    name: {name}\n"
    if "readiness" in probes:
        out += probes["readiness"]
    out += f"    resources:\n      requests:\n        cpu: {cpu}\n"
    if memory:
        out += f"        memory: {memory}\n"
    out += probes["startup"]
    out += "    volumeMounts:\n"
    ordered = sorted(volumes, key=lambda v: v[0])
    out += "".join(mount(n, p, ro) for n, p, _, ro in ordered)
    out += "  hostNetwork: true\n  priority: 2000001000\n  priorityClassName: system-node-critical\n"
    out += "  securityContext:\n    seccompProfile:\n      type: RuntimeDefault\n  volumes:\n"
    out += "".join(host_path(n, p, k) for n, p, k, _ in ordered)
    out += "status: {}\n"
    open(f"{outdir}/{name}.yaml", "w").write(out)


etcd = argv("etcd")
advertise = next(a.split("=", 1)[1] for a in etcd if a.startswith("--advertise-client-urls="))
pod(
    "etcd",
    [("kubeadm.kubernetes.io/etcd.advertise-client-urls", advertise)],
    etcd,
    "registry.k8s.io/etcd:3.5.15-0",
    {
        "liveness": probe("livenessProbe", "127.0.0.1", "/livez", 2381, "HTTP", 10),
        "readiness": probe("readinessProbe", "127.0.0.1", "/readyz", 2381, "HTTP", 0, failure=3),
        "startup": probe("startupProbe", "127.0.0.1", "/readyz", 2381, "HTTP", 10, failure=24),
    },
    "100m",
    "100Mi",
    [("etcd-certs", "/etc/kubernetes/pki/etcd", "DirectoryOrCreate", False), ("etcd-data", "/var/lib/etcd", "DirectoryOrCreate", False)],
)

api = argv("kube-apiserver")
address = next(a.split("=", 1)[1] for a in api if a.startswith("--advertise-address="))
volumes = list(CA_VOLUMES)
if hardened:
    volumes += [
        ("audit", "/etc/kubernetes/audit-policy.yaml", "File", True),
        ("audit-log", "/var/log/kubernetes/audit", "DirectoryOrCreate", False),
        ("admission", "/etc/kubernetes/admission.yaml", "File", True),
        ("enc", "/etc/kubernetes/enc", "DirectoryOrCreate", True),
    ]
pod(
    "kube-apiserver",
    [("kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint", f"{address}:6443")],
    api,
    f"registry.k8s.io/kube-apiserver:{VERSION}",
    {
        "liveness": probe("livenessProbe", address, "/livez", 6443, "HTTPS", 10),
        "readiness": probe("readinessProbe", address, "/readyz", 6443, "HTTPS", 0, period=1, failure=3),
        "startup": probe("startupProbe", address, "/livez", 6443, "HTTPS", 10, failure=24),
    },
    "250m",
    None,
    volumes,
)

kcm = argv("kube-controller-manager")
pod(
    "kube-controller-manager",
    [],
    kcm,
    f"registry.k8s.io/kube-controller-manager:{VERSION}",
    {
        "liveness": probe("livenessProbe", "127.0.0.1", "/healthz", 10257, "HTTPS", 10),
        "startup": probe("startupProbe", "127.0.0.1", "/healthz", 10257, "HTTPS", 10, failure=24),
    },
    "200m",
    None,
    CA_VOLUMES
    + [
        ("flexvolume-dir", "/usr/libexec/kubernetes/kubelet-plugins/volume/exec", "DirectoryOrCreate", False),
        ("kubeconfig", "/etc/kubernetes/controller-manager.conf", "FileOrCreate", True),
    ],
)

scheduler = argv("kube-scheduler")
pod(
    "kube-scheduler",
    [],
    scheduler,
    f"registry.k8s.io/kube-scheduler:{VERSION}",
    {
        "liveness": probe("livenessProbe", "127.0.0.1", "/livez", 10259, "HTTPS", 10),
        "readiness": probe("readinessProbe", "127.0.0.1", "/readyz", 10259, "HTTPS", 0, period=1, failure=3),
        "startup": probe("startupProbe", "127.0.0.1", "/livez", 10259, "HTTPS", 10, failure=24),
    },
    "100m",
    None,
    [("kubeconfig", "/etc/kubernetes/scheduler.conf", "FileOrCreate", True)],
)
