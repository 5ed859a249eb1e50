"""ORBITER TEST STAND-IN for kubeadm, kubelet, kubectl and a kube-apiserver. NOT KUBERNETES.

One Python package, dispatched on the name it was run as (main.py). Each stand-in Debian package
(kubeadm, kubelet, kubectl) carries its own copy in /usr/lib/orbiter-standin/<package>/standin/,
with VERSION (common.py) set to that package's version, so a machine may run kubeadm and kubelet
of different versions. The programs are launchers that put /usr/lib/orbiter-standin/<package> on
sys.path and call standin.main.main(): /usr/bin/kubeadm, /usr/bin/kubelet, /usr/bin/kubectl and
/usr/lib/orbiter-standin/standin-apiserver (kubeadm's copy). Only the Python 3 standard library
is used. Modules:

- common: VERSION, paths and constants, output, the invocation record, the hold hook, arguments
- yamlsubset: the YAML subset config files are read with; pki: DER, RSA, X.509 and JWS
- client: kubeconfig files and the client of the stand-in API
- kubeadm: its command line and `kubeadm version`; kubeadm_phases: what init and join share
  (preflight, config files, certificates, static pod markers); kubeadm_init (init, init phase
  upload-certs), kubeadm_join, kubeadm_token, kubeadm_reset, kubeadm_upgrade
- kubectl, kubelet
- state: the stand-in API's state file, Node objects, etcd members; apiserver_routes: the API's
  requests on the primary; apiserver: the server, a follower's forwarding, etcd's /health
- main: the entry

Every invocation is appended as one JSON line to /var/log/standin/invocations.jsonl (argv, time,
and the content of any --config / -f file), and its exit status to exits.jsonl beside it.

The stand-in API (standin-apiserver.service, HTTPS on :6443 with a certificate signed by the
cluster CA that `kubeadm init` makes) keeps the cluster state (nodes, bootstrap tokens, the
certificate key, versions, applied manifests) in /var/lib/standin-apiserver/state.json on the
first control plane. Control planes that join run the same unit as a follower that forwards
every request to the primary, so a VIP or load balancer in front of them works. Test hook:
/var/lib/standin-apiserver/stuck-pods.json on the primary ({"NODE": ["ns/pod", ...]}) names
pods whose pod disruption budget blocks a drain of NODE. Test hook: /etc/standin/hold.json on a
machine ({"POINT": seconds}) makes kubeadm pause at POINT, logged to holds.jsonl beside the
invocations, then print a line, so a caller gone meanwhile stops it there as a closed pipe stops
the real tool. Points: join-before-kubelet-conf (a control plane's certificates, manifests and
admin.conf written, the node registered, no kubelet.conf yet), join-after-kubelet-conf.

Stacked etcd: the API state keeps a stand-in etcd member list ("etcdMembers"). `kubeadm init` adds
the first member, `kubeadm join --control-plane` one more (the same name replaces its old entry),
and `kubeadm reset` on a control plane removes this machine's member first, as the real
remove-etcd-member phase does (never the only member; a failure only warns), printing "[reset]
Deleted contents of the etcd data directory: /var/lib/etcd". Every control plane's
standin-apiserver also serves etcd's metrics listener, plain HTTP on 127.0.0.1:2381: GET /health
answers {"health":"true","reason":""} while the member is in the list and the primary answers,
else HTTP 503 {"health":"false","reason":"..."}. Test hook: /var/lib/standin-apiserver/
etcd-unhealthy on a control plane makes its member unhealthy (the file's text is the reason). A
follower's /readyz fails (HTTP 500, "[-]etcd failed") while the primary does not answer. kubectl
honours --server, --tls-server-name, --insecure-skip-tls-verify and --request-timeout, and the
static pod markers carry the flags tools read (kube-apiserver --secure-port, etcd
--listen-metrics-urls).
"""
