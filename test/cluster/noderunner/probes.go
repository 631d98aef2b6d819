package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Probes run from the node netns (the kubelet's view): httpGet/tcpSocket to the pod IP, exec
// inside the container's namespaces (nsenter -t <pid>). grpc probes are checked as TCP connects.

func (w *podWorker) startProbes(ctx context.Context, pod *v1.Pod, c *ctrState, gen int) {
	if p := c.spec.StartupProbe; p != nil {
		go w.probeLoop(ctx, pod, c, gen, "startup", p)
	}
	if p := c.spec.ReadinessProbe; p != nil {
		go w.probeLoop(ctx, pod, c, gen, "readiness", p)
	}
	if p := c.spec.LivenessProbe; p != nil {
		go w.probeLoop(ctx, pod, c, gen, "liveness", p)
	}
}

func (w *podWorker) probeLoop(ctx context.Context, pod *v1.Pod, c *ctrState, gen int, kind string, p *v1.Probe) {
	period := time.Duration(max32(p.PeriodSeconds, 10)) * time.Second
	if p.PeriodSeconds > 0 {
		period = time.Duration(p.PeriodSeconds) * time.Second
	}
	timeout := time.Duration(max32(p.TimeoutSeconds, 1)) * time.Second
	succTh := int(max32(p.SuccessThreshold, 1))
	failTh := int(max32(p.FailureThreshold, 3))
	select {
	case <-ctx.Done():
		return
	case <-time.After(time.Duration(p.InitialDelaySeconds) * time.Second):
	}
	succ, fail := 0, 0
	for {
		w.mu.Lock()
		started := c.started
		w.mu.Unlock()
		if kind == "startup" || started {
			err := w.probeOnce(ctx, pod, c, p, timeout)
			if ctx.Err() != nil {
				return
			}
			if err == nil {
				succ++
				fail = 0
			} else {
				fail++
				succ = 0
			}
			w.mu.Lock()
			if c.gen != gen {
				w.mu.Unlock()
				return
			}
			changed := false
			switch kind {
			case "readiness":
				if succ >= succTh && !c.ready {
					c.ready, changed = true, true
				} else if fail >= failTh && c.ready {
					c.ready, changed = false, true
				}
			case "startup":
				if succ >= 1 {
					c.started = true
					if c.spec.ReadinessProbe == nil {
						c.ready = true
					}
					changed = true
				}
			case "liveness":
				if fail >= failTh {
					pid := c.pid
					w.mu.Unlock()
					w.logf("container %s: liveness probe failed %d times (%v): restarting", c.spec.Name, fail, err)
					w.event(v1.EventTypeWarning, "Unhealthy", "Liveness probe failed: %v", err)
					_ = syscall.Kill(-pid, syscall.SIGKILL)
					return
				}
			}
			w.mu.Unlock()
			if changed {
				if err != nil {
					w.logf("container %s: %s probe: %v", c.spec.Name, kind, err)
					w.event(v1.EventTypeWarning, "Unhealthy", "%s probe failed: %v", kind, err)
				}
				w.kick()
			}
			if kind == "startup" && succ >= 1 {
				return
			}
			if kind == "startup" && fail >= failTh {
				w.mu.Lock()
				pid := c.pid
				w.mu.Unlock()
				_ = syscall.Kill(-pid, syscall.SIGKILL)
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(period):
		}
	}
}

func max32(v, def int32) int32 {
	if v > 0 {
		return v
	}
	return def
}

func (w *podWorker) probePort(c *ctrState, port intstr.IntOrString) (int, error) {
	if port.Type == intstr.Int {
		return port.IntValue(), nil
	}
	for _, p := range c.spec.Ports {
		if p.Name == port.StrVal {
			return int(p.ContainerPort), nil
		}
	}
	if n, err := strconv.Atoi(port.StrVal); err == nil {
		return n, nil
	}
	return 0, fmt.Errorf("no port named %q", port.StrVal)
}

func (w *podWorker) probeOnce(ctx context.Context, pod *v1.Pod, c *ctrState, p *v1.Probe, timeout time.Duration) error {
	w.mu.Lock()
	ip, pid, env := w.podIP, c.pid, c.env
	w.mu.Unlock()
	switch {
	case p.Exec != nil:
		cctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		argv := append([]string{"-t", strconv.Itoa(pid), "-n", "-m", "-u", "--"}, p.Exec.Command...)
		cmd := exec.CommandContext(cctx, "nsenter", argv...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("exec %v: %v: %.200s", p.Exec.Command, err, out)
		}
		return nil
	case p.HTTPGet != nil:
		port, err := w.probePort(c, p.HTTPGet.Port)
		if err != nil {
			return err
		}
		host := p.HTTPGet.Host
		if host == "" {
			host = ip
		}
		scheme := "http"
		if p.HTTPGet.Scheme == v1.URISchemeHTTPS {
			scheme = "https"
		}
		url := fmt.Sprintf("%s://%s%s", scheme, net.JoinHostPort(host, strconv.Itoa(port)), p.HTTPGet.Path)
		req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
		if err != nil {
			return err
		}
		req.Header.Set("User-Agent", "kube-probe/1.34")
		for _, h := range p.HTTPGet.HTTPHeaders {
			req.Header.Set(h.Name, h.Value)
		}
		cl := &http.Client{Timeout: timeout, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true}}
		resp, err := cl.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode >= 400 {
			return fmt.Errorf("GET %s: HTTP %d", url, resp.StatusCode)
		}
		return nil
	case p.TCPSocket != nil || p.GRPC != nil:
		var port int
		var err error
		host := ip
		if p.TCPSocket != nil {
			port, err = w.probePort(c, p.TCPSocket.Port)
			if p.TCPSocket.Host != "" {
				host = p.TCPSocket.Host
			}
		} else {
			port = int(p.GRPC.Port)
		}
		if err != nil {
			return err
		}
		conn, err := net.DialTimeout("tcp", net.JoinHostPort(host, strconv.Itoa(port)), timeout)
		if err != nil {
			return err
		}
		conn.Close()
		return nil
	}
	return fmt.Errorf("probe has no handler")
}
