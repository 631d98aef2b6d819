package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/types"
	remotecommandconsts "k8s.io/apimachinery/pkg/util/remotecommand"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/kubelet/pkg/cri/streaming/portforward"
	crirc "k8s.io/kubelet/pkg/cri/streaming/remotecommand"
	utilexec "k8s.io/utils/exec"
)

// `kubectl exec` and `kubectl port-forward`: the apiserver proxies them to the kubelet API
// (/exec/<ns>/<pod>/<container>, /portForward/<ns>/<pod>); the upstream kubelet streaming
// handlers do the SPDY/WebSocket protocol, we run the command / dial the port.

func (r *runner) findWorker(ns, name string) *podWorker {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, w := range r.workers {
		w.mu.Lock()
		match := w.pod.Namespace == ns && w.pod.Name == name
		w.mu.Unlock()
		if match {
			return w
		}
	}
	return nil
}

type execer struct{ r *runner }

func (e execer) ExecInContainer(ctx context.Context, name string, _ types.UID, container string, cmd []string,
	in io.Reader, out, errw io.WriteCloser, tty bool, _ <-chan remotecommand.TerminalSize, _ time.Duration) error {
	ns, pod, _ := strings.Cut(name, "/")
	w := e.r.findWorker(ns, pod)
	if w == nil {
		return fmt.Errorf("pod %s not found on this node", name)
	}
	w.mu.Lock()
	var c *ctrState
	for _, x := range w.ctrs {
		if x.spec.Name == container || (container == "" && !x.init) {
			c = x
			break
		}
	}
	var pid int
	var env []string
	var image string
	if c != nil {
		pid, env, image = c.pid, c.env, c.spec.Image
		if !c.running {
			pid = 0
		}
	}
	w.mu.Unlock()
	if c == nil || pid == 0 {
		return fmt.Errorf("container %q of pod %s is not running", container, name)
	}
	if img, err := e.r.resolveImage(image); err == nil && len(cmd) > 0 {
		if argv, err := resolveArgv(img, cmd, nil); err == nil && argv[0] != cmd[0] &&
			strings.HasPrefix(argv[0], "/") && !strings.HasPrefix(argv[0], "/usr/") && !strings.HasPrefix(argv[0], "/bin/") {
			cmd = argv // an image binary (e.g. `fortio`), not a host command
		}
	}
	args := append([]string{"-t", strconv.Itoa(pid), "-n", "-m", "-u", "--"}, cmd...)
	x := exec.CommandContext(ctx, "nsenter", args...)
	x.Env = env
	if in != nil {
		x.Stdin = in
	}
	x.Stdout = out
	x.Stderr = errw
	if tty && errw == nil {
		x.Stderr = out
	}
	err := x.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return utilexec.CodeExitError{Err: err, Code: ee.ExitCode()}
	}
	return err
}

type forwarder struct{ r *runner }

func (f forwarder) PortForward(ctx context.Context, name string, _ types.UID, port int32, stream io.ReadWriteCloser) error {
	defer stream.Close()
	ns, pod, _ := strings.Cut(name, "/")
	w := f.r.findWorker(ns, pod)
	if w == nil {
		return fmt.Errorf("pod %s not found on this node", name)
	}
	w.mu.Lock()
	ip := w.podIP
	w.mu.Unlock()
	conn, err := net.DialTimeout("tcp", net.JoinHostPort(ip, strconv.Itoa(int(port))), 5*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(conn, stream); done <- struct{}{} }()
	go func() { _, _ = io.Copy(stream, conn); done <- struct{}{} }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	return nil
}

func (r *runner) handleExec(rw http.ResponseWriter, req *http.Request) {
	// /exec/<ns>/<pod>/<container> or /exec/<ns>/<pod>/<uid>/<container>
	parts := strings.Split(strings.TrimPrefix(req.URL.Path, "/exec/"), "/")
	if len(parts) < 3 {
		http.Error(rw, "want /exec/<ns>/<pod>/<container>", http.StatusBadRequest)
		return
	}
	container := parts[len(parts)-1]
	opts, err := crirc.NewOptions(req)
	if err != nil {
		http.Error(rw, err.Error(), http.StatusBadRequest)
		return
	}
	cmd := req.URL.Query()["command"]
	crirc.ServeExec(rw, req, execer{r}, parts[0]+"/"+parts[1], "", container, cmd, opts,
		4*time.Hour, 30*time.Second, remotecommandconsts.SupportedStreamingProtocols)
}

func (r *runner) handlePortForward(rw http.ResponseWriter, req *http.Request) {
	parts := strings.Split(strings.TrimPrefix(req.URL.Path, "/portForward/"), "/")
	if len(parts) < 2 {
		http.Error(rw, "want /portForward/<ns>/<pod>", http.StatusBadRequest)
		return
	}
	opts, err := portforward.NewV4Options(req)
	if err != nil {
		http.Error(rw, err.Error(), http.StatusBadRequest)
		return
	}
	portforward.ServePortForward(rw, req, forwarder{r}, parts[0]+"/"+parts[1], "", opts,
		4*time.Hour, 30*time.Second, portforward.SupportedProtocols)
}
