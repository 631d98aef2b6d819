package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	coordv1 "k8s.io/api/coordination/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/record"
)

const runnerVersion = "ambit-noderunner://0.1.0"

type config struct {
	node, nodeIP, podCIDR, kubeconfig, stateDir string
	nodeRoot                                    string
	nodeDirs                                    []string
	netnsPrefix                                 string
	cniBinDirs, cniConfDir                      string
	imagesMap                                   string
	clusterDNS, clusterDomain, kubeSvc          string
	port                                        int
	tlsCert, tlsKey, clientCA                   string
	kubeletVersion                              string
}

type runner struct {
	cfg    config
	client kubernetes.Interface
	ctx    context.Context

	mu      sync.Mutex
	workers map[types.UID]*podWorker
	hostMu  sync.Mutex // created-host-paths file

	startTime metav1.Time
	rec       record.EventRecorder
}

func runMain(args []string) {
	var c config
	var nodeDirs string
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	fs.StringVar(&c.node, "node", "", "node name")
	fs.StringVar(&c.nodeIP, "node-ip", "", "node InternalIP")
	fs.StringVar(&c.podCIDR, "pod-cidr", "", "node pod CIDR")
	fs.StringVar(&c.kubeconfig, "kubeconfig", "", "kubeconfig (system:node:<node>)")
	fs.StringVar(&c.stateDir, "state-dir", "", "state directory")
	fs.StringVar(&c.nodeRoot, "node-root", "", "per-node root for -node-dirs")
	fs.StringVar(&nodeDirs, "node-dirs", "", "space-separated host dirs that are per node")
	fs.StringVar(&c.netnsPrefix, "netns-prefix", "amb-k8s-pod-", "prefix of pod netns names")
	fs.StringVar(&c.cniBinDirs, "cni-bin-dirs", "/opt/cni/bin", "CNI_PATH")
	fs.StringVar(&c.cniConfDir, "cni-conf-dir", "/etc/cni/net.d", "CNI conf dir")
	fs.StringVar(&c.imagesMap, "images-map", "", "image -> binary map")
	fs.StringVar(&c.clusterDNS, "cluster-dns", "10.96.0.10", "cluster DNS IP")
	fs.StringVar(&c.clusterDomain, "cluster-domain", "cluster.local", "cluster domain")
	fs.StringVar(&c.kubeSvc, "kubernetes-service", "10.96.0.1:443", "kubernetes Service ip:port")
	fs.IntVar(&c.port, "port", 10250, "kubelet API port (logs)")
	fs.StringVar(&c.tlsCert, "tls-cert", "", "serving cert")
	fs.StringVar(&c.tlsKey, "tls-key", "", "serving key")
	fs.StringVar(&c.clientCA, "client-ca", "", "CA for apiserver client certs")
	fs.StringVar(&c.kubeletVersion, "kubelet-version", "v1.34.4", "version reported in nodeInfo")
	_ = fs.Parse(args)
	c.nodeDirs = strings.Fields(nodeDirs)
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)

	rc, err := clientcmd.BuildConfigFromFlags("", c.kubeconfig)
	if err != nil {
		log.Fatalf("kubeconfig: %v", err)
	}
	rc.QPS = 50
	rc.Burst = 100
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		log.Fatalf("client: %v", err)
	}
	r := &runner{cfg: c, client: client, ctx: context.Background(), workers: map[types.UID]*podWorker{}, startTime: metav1.Now()}
	if err := os.MkdirAll(filepath.Join(c.stateDir, "pods"), 0o755); err != nil {
		log.Fatal(err)
	}
	eb := record.NewBroadcaster()
	eb.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	r.rec = eb.NewRecorder(scheme.Scheme, v1.EventSource{Component: "kubelet", Host: c.node})
	r.cleanStale()
	go r.serveAPI()
	for {
		if err := r.registerNode(); err != nil {
			log.Printf("register node: %v", err)
			time.Sleep(2 * time.Second)
			continue
		}
		break
	}
	go r.heartbeat()

	factory := informers.NewSharedInformerFactoryWithOptions(client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = "spec.nodeName=" + c.node
		}))
	inf := factory.Core().V1().Pods().Informer()
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o interface{}) { r.onPod(o.(*v1.Pod)) },
		UpdateFunc: func(_, o interface{}) { r.onPod(o.(*v1.Pod)) },
		DeleteFunc: func(o interface{}) {
			if t, ok := o.(cache.DeletedFinalStateUnknown); ok {
				o = t.Obj
			}
			if p, ok := o.(*v1.Pod); ok {
				r.onPodGone(p)
			}
		},
	})
	log.Printf("node %s (%s, pods %s) running", c.node, c.nodeIP, c.podCIDR)
	factory.Start(r.ctx.Done())
	select {}
}

func (r *runner) onPod(p *v1.Pod) {
	r.mu.Lock()
	w := r.workers[p.UID]
	if w == nil && p.DeletionTimestamp != nil {
		r.mu.Unlock()
		r.finalDelete(p)
		return
	}
	if w == nil {
		if p.Status.Phase == v1.PodSucceeded || p.Status.Phase == v1.PodFailed {
			// finished before we saw it (e.g. runner restart): only finish its deletion
			r.mu.Unlock()
			if p.DeletionTimestamp != nil {
				r.finalDelete(p)
			}
			return
		}
		w = newPodWorker(r, p)
		r.workers[p.UID] = w
		go w.run()
	}
	r.mu.Unlock()
	w.update(p)
}

func (r *runner) onPodGone(p *v1.Pod) {
	r.mu.Lock()
	w := r.workers[p.UID]
	r.mu.Unlock()
	if w != nil {
		w.gone()
	}
}

func (r *runner) forget(uid types.UID) {
	r.mu.Lock()
	delete(r.workers, uid)
	r.mu.Unlock()
}

func (r *runner) finalDelete(p *v1.Pod) {
	zero := int64(0)
	uid := p.UID
	err := r.client.CoreV1().Pods(p.Namespace).Delete(r.ctx, p.Name, metav1.DeleteOptions{
		GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &uid}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		log.Printf("pod %s/%s: final delete: %v", p.Namespace, p.Name, err)
	}
}

// ---------------------------------------------------------------- node + lease

func (r *runner) nodeStatus() v1.NodeStatus {
	now := metav1.Now()
	cond := func(t v1.NodeConditionType, s v1.ConditionStatus, reason, msg string) v1.NodeCondition {
		return v1.NodeCondition{Type: t, Status: s, Reason: reason, Message: msg,
			LastHeartbeatTime: now, LastTransitionTime: r.startTime}
	}
	res := v1.ResourceList{
		v1.ResourceCPU:              resource.MustParse("8"),
		v1.ResourceMemory:           resource.MustParse("16Gi"),
		v1.ResourcePods:             resource.MustParse("110"),
		v1.ResourceEphemeralStorage: resource.MustParse("50Gi"),
	}
	kernel := ""
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = strings.TrimSpace(string(b))
	}
	return v1.NodeStatus{
		Capacity:    res,
		Allocatable: res,
		Conditions: []v1.NodeCondition{
			cond(v1.NodeMemoryPressure, v1.ConditionFalse, "KubeletHasSufficientMemory", "ok"),
			cond(v1.NodeDiskPressure, v1.ConditionFalse, "KubeletHasNoDiskPressure", "ok"),
			cond(v1.NodePIDPressure, v1.ConditionFalse, "KubeletHasSufficientPID", "ok"),
			cond(v1.NodeReady, v1.ConditionTrue, "KubeletReady", "ambit-noderunner is posting ready status"),
		},
		Addresses: []v1.NodeAddress{
			{Type: v1.NodeInternalIP, Address: r.cfg.nodeIP},
			{Type: v1.NodeHostName, Address: r.cfg.node},
		},
		DaemonEndpoints: v1.NodeDaemonEndpoints{KubeletEndpoint: v1.DaemonEndpoint{Port: int32(r.cfg.port)}},
		NodeInfo: v1.NodeSystemInfo{
			MachineID: r.cfg.node, SystemUUID: r.cfg.node, BootID: r.cfg.node,
			KernelVersion: kernel, OSImage: "ambit test node (network namespace)",
			ContainerRuntimeVersion: runnerVersion, KubeletVersion: r.cfg.kubeletVersion,
			OperatingSystem: "linux", Architecture: runtime.GOARCH,
		},
	}
}

func (r *runner) registerNode() error {
	nodes := r.client.CoreV1().Nodes()
	n := &v1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: r.cfg.node, Labels: map[string]string{
			"kubernetes.io/hostname": r.cfg.node, "kubernetes.io/os": "linux",
			"kubernetes.io/arch": runtime.GOARCH, "beta.kubernetes.io/os": "linux",
			"beta.kubernetes.io/arch": runtime.GOARCH}},
		Spec:   v1.NodeSpec{PodCIDR: r.cfg.podCIDR, PodCIDRs: []string{r.cfg.podCIDR}},
		Status: r.nodeStatus(),
	}
	_, err := nodes.Create(r.ctx, n, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return r.updateNodeStatus()
}

func (r *runner) updateNodeStatus() error {
	n, err := r.client.CoreV1().Nodes().Get(r.ctx, r.cfg.node, metav1.GetOptions{})
	if err != nil {
		return err
	}
	n.Status = r.nodeStatus()
	_, err = r.client.CoreV1().Nodes().UpdateStatus(r.ctx, n, metav1.UpdateOptions{})
	return err
}

func (r *runner) heartbeat() {
	leases := r.client.CoordinationV1().Leases(v1.NamespaceNodeLease)
	dur := int32(40)
	i := 0
	for {
		now := metav1.NewMicroTime(time.Now())
		l, err := leases.Get(r.ctx, r.cfg.node, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			n, nerr := r.client.CoreV1().Nodes().Get(r.ctx, r.cfg.node, metav1.GetOptions{})
			l = &coordv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: r.cfg.node, Namespace: v1.NamespaceNodeLease}}
			if nerr == nil {
				l.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: n.Name, UID: n.UID}}
			}
			l.Spec = coordv1.LeaseSpec{HolderIdentity: &r.cfg.node, LeaseDurationSeconds: &dur, RenewTime: &now}
			_, err = leases.Create(r.ctx, l, metav1.CreateOptions{})
		} else if err == nil {
			l.Spec.HolderIdentity = &r.cfg.node
			l.Spec.LeaseDurationSeconds = &dur
			l.Spec.RenewTime = &now
			_, err = leases.Update(r.ctx, l, metav1.UpdateOptions{})
		}
		if err != nil {
			log.Printf("lease: %v", err)
		}
		if i%3 == 0 {
			if err := r.updateNodeStatus(); err != nil {
				log.Printf("node status: %v", err)
			}
		}
		i++
		time.Sleep(10 * time.Second)
	}
}

// ---------------------------------------------------------------- helpers

// nodePath maps a host path to this node's copy when it lies under one of -node-dirs.
func (r *runner) nodePath(p string) string {
	cp := canonRun(filepath.Clean(p))
	for _, d := range r.cfg.nodeDirs {
		cd := canonRun(d)
		if cp == cd || strings.HasPrefix(cp, cd+"/") {
			return filepath.Join(r.cfg.nodeRoot, d, strings.TrimPrefix(cp, cd))
		}
	}
	return p
}

func canonRun(p string) string {
	if p == "/var/run" || strings.HasPrefix(p, "/var/run/") {
		return "/run" + strings.TrimPrefix(p, "/var/run")
	}
	return p
}

// recordHostPath remembers a mountpoint the runner created on the host (removed by cluster down).
func (r *runner) recordHostPath(p string) {
	r.hostMu.Lock()
	defer r.hostMu.Unlock()
	f, err := os.OpenFile(filepath.Join(r.cfg.stateDir, "created-host-paths"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return
	}
	fmt.Fprintln(f, p)
	f.Close()
}

// ensureMountpoint creates a missing mountpoint (dir or empty file) in the node's view.
func (r *runner) ensureMountpoint(p string, dir bool) error {
	real := r.nodePath(p)
	if _, err := os.Stat(real); err == nil {
		return nil
	}
	// create missing parents one by one so each can be recorded
	parts := strings.Split(strings.Trim(filepath.Clean(real), "/"), "/")
	cur := "/"
	for i, part := range parts {
		cur = filepath.Join(cur, part)
		if _, err := os.Lstat(cur); err == nil {
			continue
		}
		last := i == len(parts)-1
		if last && !dir {
			f, err := os.OpenFile(cur, os.O_CREATE|os.O_WRONLY, 0o644)
			if err != nil {
				return err
			}
			f.Close()
		} else if err := os.Mkdir(cur, 0o755); err != nil && !os.IsExist(err) {
			return err
		}
		if real == p { // only host paths need cleaning; node copies go with the run dir
			r.recordHostPath(cur)
		}
	}
	return nil
}

func runCmd(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
