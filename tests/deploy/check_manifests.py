#!/usr/bin/env python3
"""Offline checks of deploy/k8s: every overlay renders with `kubectl kustomize`, every object
validates against the Kubernetes OpenAPI schemas of a pinned version (kubernetes-validate,
strict), the LeaderWorkerSet's pod templates validate as PodTemplates and its own fields are
checked here, and the invariants operators rely on hold:

- one image everywhere (the base's ConfigMap), every container with resources and the
  restricted securityContext, pods non-root with the RuntimeDefault seccomp profile;
- every probe's port is a container port, every Service's targetPort a port of its pods;
- terminationGracePeriodSeconds above --drain-timeout;
- serving containers request and limit the same number of GPUs;
- expert parallelism: the group size is 1 + the workers the coordinator expects, the workers'
  addresses are the StatefulSet's pods in rank order on the worker port, and their contiguous
  shards (the rule of common/comm/expert_placement.h) cover all 64 experts exactly once.

Prints one line per overlay (rendered objects by kind) and exits 0, 1 on a failed check.
"""
import argparse
import collections
import os
import re
import subprocess
import sys

import kubernetes_validate
import yaml

K8S_VERSION = "1.31.0"
OVERLAYS = ["standalone", "expert-parallel", "expert-parallel-statefulset", "fill-weights"]
N_ROUTED_EXPERTS = 64  # DeepSeek-V2-Lite (REFERENCE.md §1)

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
    return cond


def render(kubectl, overlay_dir):
    out = subprocess.run([kubectl, "kustomize", overlay_dir], check=True, capture_output=True,
                         text=True)
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def validate(obj, where):
    try:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        check(False, f"{where}: schema: {e.message} at {'/'.join(map(str, e.path))}")
    except Exception as e:  # noqa: BLE001 - an unknown kind, a schema missing: a failure too
        check(False, f"{where}: schema: {e}")


def pod_templates(obj):
    """(name, PodTemplateSpec) of a workload."""
    kind = obj["kind"]
    if kind in ("Deployment", "StatefulSet", "Job"):
        return [(obj["metadata"]["name"], obj["spec"]["template"])]
    if kind == "LeaderWorkerSet":
        t = obj["spec"]["leaderWorkerTemplate"]
        return [(obj["metadata"]["name"] + "/leader", t["leaderTemplate"]),
                (obj["metadata"]["name"] + "/worker", t["workerTemplate"])]
    return []


def flag(args, name):
    for a in args or []:
        if a.startswith(f"--{name}="):
            return a.split("=", 1)[1]
    return None


def check_pod(where, tmpl, image, serving):
    spec = tmpl["spec"]
    psc = spec.get("securityContext", {})
    check(psc.get("runAsNonRoot") is True, f"{where}: runAsNonRoot")
    check(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"{where}: seccomp")
    for c in spec["containers"]:
        cw = f"{where}/{c['name']}"
        if serving:
            check(c["image"] == image, f"{cw}: image {c['image']} is not the base's {image}")
        res = c.get("resources", {})
        check("memory" in res.get("requests", {}) and "memory" in res.get("limits", {}),
              f"{cw}: memory requests and limits")
        sc = c.get("securityContext", {})
        check(sc.get("allowPrivilegeEscalation") is False, f"{cw}: allowPrivilegeEscalation")
        check(sc.get("readOnlyRootFilesystem") is True, f"{cw}: readOnlyRootFilesystem")
        check(sc.get("capabilities", {}).get("drop") == ["ALL"], f"{cw}: capabilities drop ALL")
        ports = {p["containerPort"] for p in c.get("ports", [])}
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            if serving:
                check(probe in c, f"{cw}: {probe}")
            if probe in c:
                port = c[probe].get("grpc", {}).get("port")
                check(port in ports, f"{cw}: {probe} port {port} is not a container port")
        if serving:
            gpu_req = res.get("requests", {}).get("nvidia.com/gpu")
            check(gpu_req is not None and gpu_req == res.get("limits", {}).get("nvidia.com/gpu"),
                  f"{cw}: nvidia.com/gpu request == limit")
            drain = flag(c.get("args"), "drain-timeout")
            grace = spec.get("terminationGracePeriodSeconds", 30)
            if drain is not None:
                check(grace > float(drain), f"{cw}: grace {grace} s <= --drain-timeout {drain}")
            mounts = {m["name"]: m for m in c.get("volumeMounts", [])}
            check(mounts.get("model", {}).get("readOnly") is True, f"{cw}: model mounted read-only")
            check("dshm" in mounts, f"{cw}: /dev/shm volume")


def shards(n_experts, workers):
    """Contiguous shards over ranks 1..W (expert_placement.h: the first ones get one more)."""
    base, extra = divmod(n_experts, workers)
    out, begin = [], 0
    for r in range(workers):
        size = base + (1 if r < extra else 0)
        out.append(range(begin, begin + size))
        begin += size
    return out


def check_shards(where, workers):
    covered = collections.Counter(e for s in shards(N_ROUTED_EXPERTS, workers) for e in s)
    check(workers >= 1 and sorted(covered) == list(range(N_ROUTED_EXPERTS)) and
          set(covered.values()) == {1}, f"{where}: {workers} shards do not cover the experts once")


def check_overlay(name, objs, image):
    by_kind = collections.Counter(o["kind"] for o in objs)
    print(f"{name}: {len(objs)} objects ({', '.join(f'{n} {k}' for k, n in sorted(by_kind.items()))})")
    pods = {}  # name -> (labels, container ports by name)
    for o in objs:
        where = f"{name}: {o['kind']}/{o['metadata']['name']}"
        if o["kind"] == "LeaderWorkerSet":
            check(o["apiVersion"] == "leaderworkerset.x-k8s.io/v1", f"{where}: apiVersion")
            t = o["spec"]["leaderWorkerTemplate"]
            check(isinstance(t.get("size"), int) and t["size"] >= 2, f"{where}: size >= 2")
            check(t.get("restartPolicy") == "RecreateGroupOnPodRestart", f"{where}: restartPolicy")
            for part in ("leaderTemplate", "workerTemplate"):
                validate({"apiVersion": "v1", "kind": "PodTemplate",
                          "metadata": {"name": f"{o['metadata']['name']}-{part.lower()}"},
                          "template": t[part]}, f"{where}/{part}")
            leader = t["leaderTemplate"]["spec"]["containers"][0]
            check(flag(leader.get("args"), "workers") == "lws",
                  f"{where}: the leader derives its workers from the group (--workers=lws)")
            check_shards(where, t["size"] - 1)
        else:
            validate(o, where)
        for tname, tmpl in pod_templates(o):
            serving = o["kind"] != "Job"
            check_pod(f"{name}: {tname}", tmpl, image, serving)
            ports = {p.get("name"): p["containerPort"] for c in tmpl["spec"]["containers"]
                     for p in c.get("ports", [])}
            pods[tname] = (tmpl["metadata"].get("labels", {}), ports)
        if o["kind"] == "PersistentVolumeClaim":
            check("ReadOnlyMany" in o["spec"]["accessModes"], f"{where}: ReadOnlyMany")
    # Services select pods that have the named target ports. (LeaderWorkerSet adds its own
    # labels to the pods it creates: those are taken as present.)
    for o in objs:
        if o["kind"] != "Service":
            continue
        sel = o["spec"]["selector"]
        own = {k: v for k, v in sel.items() if not k.startswith("leaderworkerset.sigs.k8s.io/")}
        matched = [p for p, (labels, _) in pods.items()
                   if all(labels.get(k) == v for k, v in own.items())]
        if "leaderworkerset.sigs.k8s.io/worker-index" in sel:
            matched = [p for p in matched if p.endswith("/leader")]
        check(matched, f"{name}: Service/{o['metadata']['name']} selects no pod")
        for port in o["spec"]["ports"]:
            for p in matched:
                check(port["targetPort"] in pods[p][1],
                      f"{name}: Service/{o['metadata']['name']} targetPort {port['targetPort']} "
                      f"is not a port of {p}")
    # The StatefulSet topology: the coordinator's --workers are the worker pods in rank order.
    sts = [o for o in objs if o["kind"] == "StatefulSet"]
    if sts:
        s = sts[0]
        wc = s["spec"]["template"]["spec"]["containers"][0]
        wport = flag(wc.get("args"), "port")
        coord = [o for o in objs if o["kind"] == "Deployment"][0]
        addrs = flag(coord["spec"]["template"]["spec"]["containers"][0].get("args"), "workers")
        addrs = addrs.split(",") if addrs else []
        svc = s["spec"]["serviceName"]
        want = [f"{s['metadata']['name']}-{i}.{svc}:{wport}" for i in range(s["spec"]["replicas"])]
        check(addrs == want, f"{name}: coordinator --workers {addrs} != the StatefulSet's {want}")
        check(any(o["kind"] == "Service" and o["metadata"]["name"] == svc and
                  o["spec"].get("clusterIP") == "None" for o in objs),
              f"{name}: headless Service {svc}")
        check_shards(name, len(addrs))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kubectl", default="kubectl")
    ap.add_argument("--k8s-dir", default=os.path.join(os.path.dirname(__file__), "..", "..",
                                                       "deploy", "k8s"))
    a = ap.parse_args()
    base = render(a.kubectl, os.path.join(a.k8s_dir, "base"))
    image = [o for o in base if o["kind"] == "ConfigMap" and
             o["metadata"]["name"] == "dsv2-image"][0]["data"]["image"]
    check(re.match(r"^[a-z0-9./-]+(:[\w.-]+)?$", image), f"base image reference {image!r}")
    print(f"image: {image}; schemas: Kubernetes {K8S_VERSION} (kubernetes-validate "
          f"{kubernetes_validate.__version__ if hasattr(kubernetes_validate, '__version__') else '?'}, strict)")
    for overlay in OVERLAYS:
        check_overlay(overlay, render(a.kubectl, os.path.join(a.k8s_dir, overlay)), image)
    for f in failures:
        print("FAILED:", f)
    print(f"{len(failures)} failed checks" if failures else "all deploy checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
