package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"syscall"
	"time"

	"sync"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

type ctrState struct {
	spec      v1.Container
	init      bool
	sidecar   bool // init container with restartPolicy Always
	pid       int
	running   bool
	everRun   bool
	startedAt metav1.Time
	restarts  int32
	ready     bool
	started   bool // startup probe passed (or none)
	lastTerm  *v1.ContainerStateTerminated
	term      *v1.ContainerStateTerminated
	waiting   string
	waitMsg   string
	nextStart time.Time
	backoff   time.Duration
	cancel    context.CancelFunc
	gen       int
	done      bool // init container finished with 0
	argv, env []string
	mounts    []mnt
}

type sandbox struct {
	Netns       string          `json:"netns"`
	ContainerID string          `json:"containerID"`
	PodNS       string          `json:"podNamespace"`
	PodName     string          `json:"podName"`
	PodUID      string          `json:"podUID"`
	CNIResult   json.RawMessage `json:"cniResult,omitempty"`
}

type podWorker struct {
	r   *runner
	uid types.UID
	dir string

	mu         sync.Mutex
	pod        *v1.Pod
	gonePod    bool
	poke       chan struct{}
	sb         *sandbox
	cl         *confList
	podIP      string
	sbErr      string
	volErr     string
	volsReady  bool
	volRefresh time.Time
	ctrs       []*ctrState
	initDone   bool
	terminal   bool
	failed     bool
	startTime  metav1.Time
	condTimes  map[v1.PodConditionType]condTime
	lastStatus *v1.PodStatus
	tokens     map[string]tokenCache
	sbBackoff  time.Time
}

type condTime struct {
	status v1.ConditionStatus
	t      metav1.Time
}

func newPodWorker(r *runner, p *v1.Pod) *podWorker {
	w := &podWorker{r: r, uid: p.UID, pod: p, poke: make(chan struct{}, 1),
		dir:       filepath.Join(r.cfg.stateDir, "pods", string(p.UID)),
		startTime: metav1.Now(), condTimes: map[v1.PodConditionType]condTime{}, tokens: map[string]tokenCache{}}
	for _, c := range p.Spec.InitContainers {
		sidecar := c.RestartPolicy != nil && *c.RestartPolicy == v1.ContainerRestartPolicyAlways
		w.ctrs = append(w.ctrs, &ctrState{spec: c, init: true, sidecar: sidecar, started: true, backoff: time.Second})
	}
	for _, c := range p.Spec.Containers {
		w.ctrs = append(w.ctrs, &ctrState{spec: c, started: true, backoff: time.Second})
	}
	return w
}

func (w *podWorker) kick() {
	select {
	case w.poke <- struct{}{}:
	default:
	}
}

func (w *podWorker) update(p *v1.Pod) {
	w.mu.Lock()
	if w.pod == nil || rvNum(p.ResourceVersion) >= rvNum(w.pod.ResourceVersion) {
		w.pod = p
	}
	w.mu.Unlock()
	w.kick()
}

func (w *podWorker) gone() {
	w.mu.Lock()
	w.gonePod = true
	w.mu.Unlock()
	w.kick()
}

func (w *podWorker) logf(format string, a ...interface{}) {
	log.Printf("pod %s/%s: %s", w.pod.Namespace, w.pod.Name, fmt.Sprintf(format, a...))
}

func (w *podWorker) run() {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-w.poke:
		case <-tick.C:
		}
		w.mu.Lock()
		pod := w.pod
		gone := w.gonePod
		w.mu.Unlock()
		if gone || pod.DeletionTimestamp != nil {
			w.teardown(stopGrace(pod))
			if !gone {
				w.r.finalDelete(pod)
			}
			w.r.forget(w.uid)
			return
		}
		if w.terminal {
			continue
		}
		if w.sb == nil {
			if time.Now().Before(w.sbBackoff) {
				continue
			}
			if err := w.setupSandbox(pod); err != nil {
				w.mu.Lock()
				w.sbErr = err.Error()
				w.mu.Unlock()
				w.logf("sandbox: %v", err)
				w.event(v1.EventTypeWarning, "FailedCreatePodSandBox", "Failed to create pod sandbox: %v", err)
				w.sbBackoff = time.Now().Add(3 * time.Second)
				w.pushStatus()
				continue
			}
			w.mu.Lock()
			w.sbErr = ""
			w.mu.Unlock()
		}
		if !w.volsReady || time.Since(w.volRefresh) > 15*time.Second {
			err := w.prepareVolumes(pod)
			if err != nil && !w.volsReady && w.volErr != err.Error() {
				w.logf("volumes: %v", err)
				w.event(v1.EventTypeWarning, "FailedMount", "%v", err)
			}
			w.mu.Lock()
			if err != nil {
				w.volErr = err.Error()
			} else {
				w.volErr = ""
				w.volsReady = true
			}
			w.volRefresh = time.Now()
			w.mu.Unlock()
			if !w.volsReady {
				w.pushStatus()
				continue
			}
		}
		w.step(pod)
		w.pushStatus()
	}
}

// ---------------------------------------------------------------- sandbox

func (w *podWorker) setupSandbox(pod *v1.Pod) error {
	if err := os.MkdirAll(filepath.Join(w.dir, "logs"), 0o755); err != nil {
		return err
	}
	sb := &sandbox{ContainerID: "ambit" + strings.ReplaceAll(string(pod.UID), "-", ""),
		PodNS: pod.Namespace, PodName: pod.Name, PodUID: string(pod.UID)}
	ip := w.r.cfg.nodeIP
	if !pod.Spec.HostNetwork {
		sb.Netns = w.r.cfg.netnsPrefix + string(pod.UID)[:8]
		_ = runCmd("ip", "netns", "del", sb.Netns)
		if err := runCmd("ip", "netns", "add", sb.Netns); err != nil {
			return err
		}
		if err := runCmd("ip", "-n", sb.Netns, "link", "set", "lo", "up"); err != nil {
			_ = runCmd("ip", "netns", "del", sb.Netns)
			return err
		}
		// write the sandbox record first so a crash mid-ADD is still cleaned up
		_ = w.saveSandbox(sb)
		res, cl, podIP, err := w.r.cniAdd(w.cniArgs(sb))
		if err != nil {
			_ = runCmd("ip", "netns", "del", sb.Netns)
			os.Remove(filepath.Join(w.dir, "sandbox.json"))
			return err
		}
		sb.CNIResult = res
		w.cl = cl
		ip = podIP
	}
	if err := w.saveSandbox(sb); err != nil {
		return err
	}
	if err := w.writeEtcFiles(pod, ip); err != nil {
		return err
	}
	w.mu.Lock()
	w.sb = sb
	w.podIP = ip
	w.mu.Unlock()
	w.logf("sandbox ready, ip %s", ip)
	return nil
}

func (w *podWorker) cniArgs(sb *sandbox) cniArgs {
	return cniArgs{containerID: sb.ContainerID, netns: "/run/netns/" + sb.Netns, ifname: "eth0",
		podNS: sb.PodNS, podName: sb.PodName, podUID: sb.PodUID}
}

func (w *podWorker) saveSandbox(sb *sandbox) error {
	b, _ := json.Marshal(sb)
	return os.WriteFile(filepath.Join(w.dir, "sandbox.json"), b, 0o644)
}

func (w *podWorker) writeEtcFiles(pod *v1.Pod, ip string) error {
	etc := filepath.Join(w.dir, "etc")
	if err := os.MkdirAll(etc, 0o755); err != nil {
		return err
	}
	hn := pod.Spec.Hostname
	if hn == "" {
		hn = pod.Name
	}
	if pod.Spec.HostNetwork {
		hn = w.r.cfg.node
	}
	var hosts strings.Builder
	hosts.WriteString("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
	fqdn := ""
	if pod.Spec.Subdomain != "" {
		fqdn = fmt.Sprintf("%s.%s.%s.svc.%s", hn, pod.Spec.Subdomain, pod.Namespace, w.r.cfg.clusterDomain)
	}
	fmt.Fprintf(&hosts, "%s\t%s %s\n", ip, fqdn, hn)
	for _, ha := range pod.Spec.HostAliases {
		fmt.Fprintf(&hosts, "%s\t%s\n", ha.IP, strings.Join(ha.Hostnames, " "))
	}
	if err := os.WriteFile(filepath.Join(etc, "hosts"), []byte(hosts.String()), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(etc, "hostname"), []byte(hn+"\n"), 0o644); err != nil {
		return err
	}
	policy := pod.Spec.DNSPolicy
	var ns, search, opts []string
	switch {
	case policy == v1.DNSNone:
	case policy == v1.DNSClusterFirstWithHostNet || (policy == v1.DNSClusterFirst || policy == "") && !pod.Spec.HostNetwork:
		ns = []string{w.r.cfg.clusterDNS}
		d := w.r.cfg.clusterDomain
		search = []string{pod.Namespace + ".svc." + d, "svc." + d, d}
		opts = []string{"ndots:5"}
	default:
		return nil // host's resolv.conf
	}
	if dc := pod.Spec.DNSConfig; dc != nil {
		ns = append(ns, dc.Nameservers...)
		search = append(search, dc.Searches...)
		for _, o := range dc.Options {
			if o.Value != nil {
				opts = append(opts, o.Name+":"+*o.Value)
			} else {
				opts = append(opts, o.Name)
			}
		}
	}
	var rc strings.Builder
	for _, n := range ns {
		fmt.Fprintf(&rc, "nameserver %s\n", n)
	}
	if len(search) > 0 {
		fmt.Fprintf(&rc, "search %s\n", strings.Join(search, " "))
	}
	if len(opts) > 0 {
		fmt.Fprintf(&rc, "options %s\n", strings.Join(opts, " "))
	}
	return os.WriteFile(filepath.Join(etc, "resolv.conf"), []byte(rc.String()), 0o644)
}

// minStopGrace is the kubelet's minimum grace period (minimumGracePeriodInSeconds): even a
// pod force-deleted from the API (grace 0, or gone before we saw its deletion) gets SIGTERM
// and 2 s before SIGKILL, so its containers can clean up after themselves.
const minStopGrace = 2 * time.Second

// stopGrace is how long a deleted pod's containers get between SIGTERM and SIGKILL: the
// deletion's grace period, else the spec's, else 30 s, never under minStopGrace.
func stopGrace(pod *v1.Pod) time.Duration {
	grace := int64(30)
	if pod.DeletionGracePeriodSeconds != nil {
		grace = *pod.DeletionGracePeriodSeconds
	} else if pod.Spec.TerminationGracePeriodSeconds != nil {
		grace = *pod.Spec.TerminationGracePeriodSeconds
	}
	if d := time.Duration(grace) * time.Second; d > minStopGrace {
		return d
	}
	return minStopGrace
}

// teardown stops every container (SIGTERM, then SIGKILL after grace) and removes the sandbox.
func (w *podWorker) teardown(grace time.Duration) {
	if grace > 30*time.Second {
		grace = 30 * time.Second
	}
	w.killAll(grace)
	w.removeSandbox()
	os.RemoveAll(w.dir)
	w.logf("torn down")
}

func (w *podWorker) killAll(grace time.Duration) {
	w.mu.Lock()
	var pids []int
	for _, c := range w.ctrs {
		if c.running && c.pid > 0 {
			pids = append(pids, c.pid)
			c.nextStart = time.Now().Add(time.Hour)
		}
	}
	w.mu.Unlock()
	if len(pids) > 0 && w.r.rec != nil {
		w.event(v1.EventTypeNormal, "Killing", "Stopping %d container(s)", len(pids))
	}
	for _, p := range pids {
		_ = syscall.Kill(-p, syscall.SIGTERM)
	}
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		alive := false
		for _, p := range pids {
			if syscall.Kill(p, 0) == nil && !isZombie(p) {
				alive = true
			}
		}
		if !alive {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, p := range pids {
		_ = syscall.Kill(-p, syscall.SIGKILL)
	}
	// pod netns: anything else still inside it
	w.mu.Lock()
	sb := w.sb
	w.mu.Unlock()
	if sb != nil && sb.Netns != "" {
		if out, err := exec.Command("ip", "netns", "pids", sb.Netns).Output(); err == nil {
			for _, f := range strings.Fields(string(out)) {
				var pid int
				fmt.Sscan(f, &pid)
				if pid > 0 {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
	}
}

func isZombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] == 'Z'
	}
	return false
}

func (w *podWorker) removeSandbox() {
	w.mu.Lock()
	sb := w.sb
	w.sb = nil
	w.mu.Unlock()
	if sb == nil {
		return
	}
	if sb.Netns != "" {
		for _, err := range w.r.cniDel(w.cniArgs(sb), w.cl, sb.CNIResult) {
			w.logf("CNI DEL: %v", err)
		}
		if err := runCmd("ip", "netns", "del", sb.Netns); err != nil {
			w.logf("%v", err)
		}
	}
	os.Remove(filepath.Join(w.dir, "sandbox.json"))
}

// cleanStale removes sandboxes a previous runner left behind (they are recreated from the API).
func (r *runner) cleanStale() {
	dirs, _ := filepath.Glob(filepath.Join(r.cfg.stateDir, "pods", "*"))
	for _, d := range dirs {
		var sb sandbox
		if b, err := os.ReadFile(filepath.Join(d, "sandbox.json")); err == nil && json.Unmarshal(b, &sb) == nil {
			w := &podWorker{r: r, dir: d, sb: &sb, pod: &v1.Pod{ObjectMeta: metav1.ObjectMeta{Name: sb.PodName, Namespace: sb.PodNS}}}
			if b, err := os.ReadFile(filepath.Join(d, "pids")); err == nil {
				for _, f := range strings.Fields(string(b)) {
					var pid int
					fmt.Sscan(f, &pid)
					if pid > 0 {
						_ = syscall.Kill(-pid, syscall.SIGKILL)
					}
				}
			}
			w.killAll(0)
			w.removeSandbox()
		}
		os.RemoveAll(d)
	}
}

// ---------------------------------------------------------------- containers

func (w *podWorker) step(pod *v1.Pod) {
	now := time.Now()
	policy := pod.Spec.RestartPolicy
	if !w.initDone {
		for _, c := range w.ctrs {
			if !c.init {
				continue
			}
			w.mu.Lock()
			running, term, everRun, sidecar, done, started := c.running, c.term, c.everRun, c.sidecar, c.done, c.started
			w.mu.Unlock()
			if done {
				continue
			}
			if sidecar {
				if !running && now.After(c.nextStart) {
					w.start(pod, c)
				}
				w.mu.Lock()
				ok := c.running && c.started
				w.mu.Unlock()
				if !ok {
					return
				}
				_ = started
				continue
			}
			if running {
				return
			}
			if everRun && term != nil {
				if term.ExitCode == 0 {
					w.mu.Lock()
					c.done = true
					w.mu.Unlock()
					continue
				}
				if policy == v1.RestartPolicyNever {
					w.finish(pod, true)
					return
				}
			}
			if now.After(c.nextStart) {
				w.start(pod, c)
			}
			return
		}
		w.initDone = true
	}
	anyLive := false
	allOK := true
	for _, c := range w.ctrs {
		w.mu.Lock()
		running, term, everRun, sidecar, init := c.running, c.term, c.everRun, c.sidecar, c.init
		w.mu.Unlock()
		if init && !sidecar {
			continue
		}
		if running {
			if !sidecar {
				anyLive = true
			}
			continue
		}
		restart := !everRun
		if everRun && term != nil {
			switch {
			case sidecar || policy == v1.RestartPolicyAlways || policy == "":
				restart = true
			case policy == v1.RestartPolicyOnFailure:
				restart = term.ExitCode != 0
			}
			if term.ExitCode != 0 && !sidecar {
				allOK = false
			}
		}
		if restart {
			if !sidecar {
				anyLive = true
			}
			if now.After(c.nextStart) {
				w.start(pod, c)
			} else {
				w.mu.Lock()
				if c.everRun {
					c.waiting = "CrashLoopBackOff"
					c.waitMsg = fmt.Sprintf("back-off restarting failed container %s", c.spec.Name)
				}
				w.mu.Unlock()
			}
		}
	}
	if !anyLive {
		w.finish(pod, !allOK)
	}
}

func (w *podWorker) finish(pod *v1.Pod, failed bool) {
	w.killAll(2 * time.Second) // sidecars
	w.mu.Lock()
	w.terminal = true
	w.failed = failed
	w.mu.Unlock()
	w.removeSandbox()
	w.logf("finished (failed=%v)", failed)
}

type mnt struct {
	src, dst string
	ro       bool
}

func shq(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// nodeViewScript: shell prologue run in a private mount namespace: fresh /sys for the current
// netns, the node's own copies of the per-node host dirs, then the given mounts; then exec "$@".
func (r *runner) nodeViewScript(mounts []mnt, hostname string) string {
	var b strings.Builder
	b.WriteString("set -e\nmount -t sysfs sysfs /sys 2>/dev/null || true\n")
	for _, d := range r.cfg.nodeDirs {
		fmt.Fprintf(&b, "mount --bind %s %s\n", shq(filepath.Join(r.cfg.nodeRoot, d)), shq(d))
	}
	for _, m := range mounts {
		fmt.Fprintf(&b, "mount --rbind %s %s\n", shq(m.src), shq(m.dst))
		if m.ro {
			fmt.Fprintf(&b, "mount -o remount,bind,ro %s\n", shq(m.dst))
		}
	}
	if hostname != "" {
		fmt.Fprintf(&b, "hostname %s\n", shq(hostname))
	}
	b.WriteString("exec \"$@\"\n")
	return b.String()
}

func (w *podWorker) buildContainer(pod *v1.Pod, c *ctrState) (argv, env []string, mounts []mnt, reason string, err error) {
	img, err := w.r.resolveImage(c.spec.Image)
	if err != nil {
		return nil, nil, nil, "ErrImagePull", err
	}
	env, err = w.containerEnv(pod, &c.spec)
	if err != nil {
		return nil, nil, nil, "CreateContainerConfigError", err
	}
	vals := map[string]string{}
	for _, e := range env {
		k, v, _ := strings.Cut(e, "=")
		vals[k] = v
	}
	exp := func(in []string) []string {
		out := make([]string, len(in))
		for i, s := range in {
			out[i] = expandVars(s, vals)
		}
		return out
	}
	argv, err = resolveArgv(img, exp(c.spec.Command), exp(c.spec.Args))
	if err != nil {
		return nil, nil, nil, "CreateContainerError", err
	}
	// /etc files first, then volumes (parents before children)
	etc := filepath.Join(w.dir, "etc")
	mounts = append(mounts, mnt{src: filepath.Join(etc, "hosts"), dst: "/etc/hosts"}, mnt{src: filepath.Join(etc, "hostname"), dst: "/etc/hostname"})
	if _, err := os.Stat(filepath.Join(etc, "resolv.conf")); err == nil {
		mounts = append(mounts, mnt{src: filepath.Join(etc, "resolv.conf"), dst: "/etc/resolv.conf"})
	}
	vols := map[string]*v1.Volume{}
	for i := range pod.Spec.Volumes {
		vols[pod.Spec.Volumes[i].Name] = &pod.Spec.Volumes[i]
	}
	vms := append([]v1.VolumeMount(nil), c.spec.VolumeMounts...)
	sort.SliceStable(vms, func(i, j int) bool {
		return strings.Count(filepath.Clean(vms[i].MountPath), "/") < strings.Count(filepath.Clean(vms[j].MountPath), "/")
	})
	for _, vm := range vms {
		v := vols[vm.Name]
		if v == nil {
			return nil, nil, nil, "CreateContainerConfigError", fmt.Errorf("volumeMount %q: no such volume", vm.Name)
		}
		src := w.volumeSource(v)
		if sp := vm.SubPath; sp != "" || vm.SubPathExpr != "" {
			if sp == "" {
				sp = expandVars(vm.SubPathExpr, vals)
			}
			src = filepath.Join(src, filepath.Clean("/"+sp))
			if _, err := os.Stat(w.r.nodePath(src)); os.IsNotExist(err) {
				_ = os.MkdirAll(w.r.nodePath(src), 0o755)
			}
		}
		isDir := true
		if st, err := os.Stat(w.r.nodePath(src)); err == nil && !st.IsDir() {
			isDir = false
		}
		if err := w.r.ensureMountpoint(vm.MountPath, isDir); err != nil {
			return nil, nil, nil, "CreateContainerError", fmt.Errorf("mountpoint %s: %v", vm.MountPath, err)
		}
		mounts = append(mounts, mnt{src: src, dst: vm.MountPath, ro: vm.ReadOnly})
	}
	return argv, env, mounts, "", nil
}

func (w *podWorker) launchArgv(pod *v1.Pod, c *ctrState) []string {
	hn := pod.Spec.Hostname
	if hn == "" {
		hn = pod.Name
	}
	if pod.Spec.HostNetwork {
		hn = w.r.cfg.node
	}
	argv := []string{}
	w.mu.Lock()
	sb := w.sb
	w.mu.Unlock()
	if sb != nil && sb.Netns != "" {
		argv = append(argv, "nsenter", "--net=/run/netns/"+sb.Netns, "--")
	}
	argv = append(argv, "unshare", "--mount", "--uts", "--propagation", "slave", "--",
		"/bin/sh", "-c", w.r.nodeViewScript(c.mounts, hn)+"", "sh")
	return append(argv, c.argv...)
}

func (w *podWorker) start(pod *v1.Pod, c *ctrState) {
	argv, env, mounts, reason, err := w.buildContainer(pod, c)
	w.mu.Lock()
	if err != nil {
		c.waiting, c.waitMsg = reason, err.Error()
		c.nextStart = time.Now().Add(5 * time.Second)
		w.mu.Unlock()
		w.logf("container %s: %s: %v", c.spec.Name, reason, err)
		w.event(v1.EventTypeWarning, "Failed", "Error: %s: %v", reason, err)
		return
	}
	c.argv, c.env, c.mounts = argv, env, mounts
	w.mu.Unlock()
	full := w.launchArgv(pod, c)
	cmd := exec.Command(full[0], full[1:]...)
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	logf, err := os.OpenFile(filepath.Join(w.dir, "logs", c.spec.Name+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err == nil {
		cmd.Stdout = logf
		cmd.Stderr = logf
	}
	if c.spec.WorkingDir != "" {
		// insert `cd` before the final exec of the prologue
		for i, a := range cmd.Args {
			if strings.HasPrefix(a, "set -e\n") {
				cmd.Args[i] = strings.Replace(a, "exec \"$@\"\n", "cd "+shq(c.spec.WorkingDir)+" 2>/dev/null || cd /\nexec \"$@\"\n", 1)
			}
		}
	}
	if err := cmd.Start(); err != nil {
		if logf != nil {
			logf.Close()
		}
		w.mu.Lock()
		c.waiting, c.waitMsg = "StartError", err.Error()
		c.nextStart = time.Now().Add(5 * time.Second)
		w.mu.Unlock()
		return
	}
	if logf != nil {
		logf.Close()
	}
	ctx, cancel := context.WithCancel(context.Background())
	w.mu.Lock()
	if c.everRun {
		c.restarts++
	}
	c.everRun = true
	c.gen++
	gen := c.gen
	c.pid = cmd.Process.Pid
	c.running = true
	c.startedAt = metav1.Now()
	if c.term != nil {
		c.lastTerm = c.term
	}
	c.term = nil
	c.waiting, c.waitMsg = "", ""
	c.started = c.spec.StartupProbe == nil
	c.ready = c.spec.ReadinessProbe == nil && c.started
	if c.init && !c.sidecar {
		c.ready = false
	}
	c.cancel = cancel
	w.savePids()
	w.mu.Unlock()
	w.logf("container %s started (pid %d): %s", c.spec.Name, cmd.Process.Pid, strings.Join(argv, " "))
	w.event(v1.EventTypeNormal, "Started", "Started container %s (%s)", c.spec.Name, argv[0])
	go func() {
		err := cmd.Wait()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				code = 128 + int(ws.Signal())
			} else {
				code = ee.ExitCode()
			}
		} else if err != nil {
			code = 128
		}
		cancel()
		w.mu.Lock()
		if c.gen == gen {
			c.running = false
			c.ready = false
			reason := "Completed"
			if code != 0 {
				reason = "Error"
			}
			c.term = &v1.ContainerStateTerminated{ExitCode: int32(code), Reason: reason,
				StartedAt: c.startedAt, FinishedAt: metav1.Now(),
				ContainerID: w.containerID(c)}
			if time.Since(c.startedAt.Time) > 60*time.Second {
				c.backoff = time.Second
			}
			c.nextStart = time.Now().Add(c.backoff)
			if c.backoff < 30*time.Second {
				c.backoff *= 2
			}
		}
		w.mu.Unlock()
		w.logf("container %s exited with %d", c.spec.Name, code)
		w.kick()
	}()
	w.startProbes(ctx, pod, c, gen)
}

func (w *podWorker) savePids() {
	var b strings.Builder
	for _, c := range w.ctrs {
		if c.running {
			fmt.Fprintf(&b, "%d\n", c.pid)
		}
	}
	_ = os.WriteFile(filepath.Join(w.dir, "pids"), []byte(b.String()), 0o644)
}

func (w *podWorker) containerID(c *ctrState) string {
	return fmt.Sprintf("ambit://%s-%s-%d", string(w.uid)[:8], c.spec.Name, c.restarts)
}

// ---------------------------------------------------------------- status

func (w *podWorker) cond(t v1.PodConditionType, ok bool, reason string) v1.PodCondition {
	s := v1.ConditionFalse
	if ok {
		s = v1.ConditionTrue
	}
	ct, seen := w.condTimes[t]
	if !seen || ct.status != s {
		ct = condTime{s, metav1.Now()}
		w.condTimes[t] = ct
	}
	c := v1.PodCondition{Type: t, Status: s, LastTransitionTime: ct.t}
	if !ok {
		c.Reason = reason
	}
	return c
}

func (w *podWorker) buildStatus(pod *v1.Pod) v1.PodStatus {
	w.mu.Lock()
	defer w.mu.Unlock()
	st := v1.PodStatus{QOSClass: pod.Status.QOSClass, StartTime: &w.startTime,
		HostIP: w.r.cfg.nodeIP, HostIPs: []v1.HostIP{{IP: w.r.cfg.nodeIP}}}
	if w.podIP != "" && !w.terminal {
		st.PodIP = w.podIP
		st.PodIPs = []v1.PodIP{{IP: w.podIP}}
	}
	allReady := true
	anyRunning := false
	for _, c := range w.ctrs {
		cs := v1.ContainerStatus{Name: c.spec.Name, Image: c.spec.Image, ImageID: "ambit-image://" + c.spec.Image,
			RestartCount: c.restarts, LastTerminationState: v1.ContainerState{Terminated: c.lastTerm}}
		started := c.running && c.started
		cs.Started = &started
		cs.Ready = c.running && c.ready
		if c.init && !c.sidecar {
			cs.Ready = c.done
		}
		switch {
		case c.running:
			cs.State.Running = &v1.ContainerStateRunning{StartedAt: c.startedAt}
			cs.ContainerID = w.containerID(c)
		case c.term != nil && c.waiting == "":
			cs.State.Terminated = c.term
			cs.ContainerID = c.term.ContainerID
		default:
			reason := c.waiting
			if reason == "" {
				reason = "ContainerCreating"
				if c.init {
					reason = "PodInitializing"
				}
			}
			msg := c.waitMsg
			if w.sbErr != "" {
				msg = w.sbErr
			} else if w.volErr != "" && !w.volsReady {
				msg = w.volErr
			}
			cs.State.Waiting = &v1.ContainerStateWaiting{Reason: reason, Message: msg}
			if c.term != nil {
				cs.LastTerminationState = v1.ContainerState{Terminated: c.term}
			}
		}
		if c.init {
			st.InitContainerStatuses = append(st.InitContainerStatuses, cs)
			continue
		}
		if c.running {
			anyRunning = true
		}
		if !cs.Ready {
			allReady = false
		}
		st.ContainerStatuses = append(st.ContainerStatuses, cs)
	}
	switch {
	case w.terminal && w.failed:
		st.Phase = v1.PodFailed
	case w.terminal:
		st.Phase = v1.PodSucceeded
	case w.initDone && (anyRunning || len(st.ContainerStatuses) > 0 && hasEverRun(w.ctrs)):
		st.Phase = v1.PodRunning
	default:
		st.Phase = v1.PodPending
	}
	if w.terminal {
		allReady = false
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == v1.PodScheduled {
			st.Conditions = append(st.Conditions, c)
		}
	}
	st.Conditions = append(st.Conditions,
		w.cond(v1.PodReadyToStartContainers, w.sb != nil, ""),
		w.cond(v1.PodInitialized, w.initDone, "ContainersNotInitialized"),
		w.cond(v1.ContainersReady, allReady, "ContainersNotReady"),
		w.cond(v1.PodReady, allReady, "ContainersNotReady"))
	return st
}

func hasEverRun(cs []*ctrState) bool {
	for _, c := range cs {
		if !c.init && c.everRun {
			return true
		}
	}
	return false
}

func (w *podWorker) pushStatus() {
	w.mu.Lock()
	pod := w.pod
	w.mu.Unlock()
	st := w.buildStatus(pod)
	if w.lastStatus != nil && reflect.DeepEqual(*w.lastStatus, st) {
		return
	}
	p := pod.DeepCopy()
	p.Status = st
	np, err := w.r.client.CoreV1().Pods(p.Namespace).UpdateStatus(w.r.ctx, p, metav1.UpdateOptions{})
	if err != nil {
		if !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
			w.logf("status: %v", err)
		}
		if apierrors.IsConflict(err) {
			if fresh, gerr := w.r.client.CoreV1().Pods(p.Namespace).Get(w.r.ctx, p.Name, metav1.GetOptions{}); gerr == nil && fresh.UID == w.uid {
				w.update(fresh)
			}
		}
		return
	}
	w.lastStatus = &st
	w.update(np)
}

func rvNum(s string) uint64 {
	var n uint64
	fmt.Sscan(s, &n)
	return n
}

func (w *podWorker) event(typ, reason, format string, a ...interface{}) {
	if w.r.rec == nil {
		return
	}
	w.mu.Lock()
	pod := w.pod
	w.mu.Unlock()
	w.r.rec.Eventf(pod, typ, reason, format, a...)
}
