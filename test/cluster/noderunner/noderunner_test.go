package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
)

func TestGlobMatch(t *testing.T) {
	cases := []struct {
		pat, s string
		want   bool
	}{
		{"fortio/fortio:*", "fortio/fortio:1.66", true},
		{"fortio/fortio:*", "fortio/fortio", false},
		{"*/ambit/ambit-node:*", "ghcr.io/x/ambit/ambit-node:0.1", true},
		{"busybox:*", "busybox:1.36", true},
		{"busybox:*", "busyboxx:1", false},
		{"a*b*c", "a-x-b-y-c", true},
		{"a*b*c", "a-x-b-y-d", false},
	}
	for _, c := range cases {
		if got := globMatch(c.pat, c.s); got != c.want {
			t.Errorf("globMatch(%q, %q) = %v, want %v", c.pat, c.s, got, c.want)
		}
	}
}

func TestImageNames(t *testing.T) {
	n := imageNames("docker.io/library/busybox")
	found := false
	for _, x := range n {
		if x == "busybox:latest" {
			found = true
		}
	}
	if !found {
		t.Errorf("imageNames(docker.io/library/busybox) = %v, want busybox:latest among them", n)
	}
}

func TestResolveArgv(t *testing.T) {
	dir := t.TempDir()
	ep := filepath.Join(dir, "ambit-node")
	other := filepath.Join(dir, "ambit-operator")
	for _, f := range []string{ep, other} {
		if err := os.WriteFile(f, []byte("#!/bin/sh\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	e := &imageEntry{entrypoint: ep, args: []string{"serve"}}
	check := func(name string, cmd, args, want []string) {
		t.Helper()
		got, err := resolveArgv(e, cmd, args)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(got) != len(want) {
			t.Fatalf("%s: got %v, want %v", name, got, want)
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("%s: got %v, want %v", name, got, want)
			}
		}
	}
	check("entrypoint + image args", nil, nil, []string{ep, "serve"})
	check("args replace image args", nil, []string{"-v"}, []string{ep, "-v"})
	check("command replaces both", []string{"/usr/local/bin/ambit-node"}, nil, []string{ep})
	check("sibling binary", []string{"ambit-operator"}, []string{"x"}, []string{other, "x"})
	sh, _ := filepath.Abs("/bin/sh")
	got, err := resolveArgv(e, []string{"sh"}, []string{"-c", "true"})
	if err != nil || filepath.Base(got[0]) != "sh" || got[0] == "sh" {
		t.Fatalf("host command: got %v, %v (want an absolute path to sh like %s)", got, err, sh)
	}
	if _, err := resolveArgv(&imageEntry{entrypoint: "-"}, nil, nil); err == nil {
		t.Fatal("no entrypoint and no command must fail")
	}
	if _, err := resolveArgv(e, []string{"no-such-binary-anywhere"}, nil); err == nil {
		t.Fatal("unknown command must fail")
	}
}

func TestExpandVars(t *testing.T) {
	vals := map[string]string{"POD_NAME": "p1", "NS": "default"}
	cases := map[string]string{
		"$(POD_NAME).$(NS)":  "p1.default",
		"$$(POD_NAME)":       "$(POD_NAME)",
		"$(UNKNOWN)":         "$(UNKNOWN)",
		"plain":              "plain",
		"cost $5":            "cost $5",
		"trailing $":         "trailing $",
		"--name=$(POD_NAME)": "--name=p1",
	}
	for in, want := range cases {
		if got := expandVars(in, vals); got != want {
			t.Errorf("expandVars(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestNodePath(t *testing.T) {
	r := &runner{cfg: config{nodeRoot: "/nr", nodeDirs: []string{"/etc/cni/net.d", "/var/run/ambit"}}}
	cases := map[string]string{
		"/etc/cni/net.d":          "/nr/etc/cni/net.d",
		"/etc/cni/net.d/x.conf":   "/nr/etc/cni/net.d/x.conf",
		"/run/ambit/cni.sock":     "/nr/var/run/ambit/cni.sock",
		"/var/run/ambit/cni.sock": "/nr/var/run/ambit/cni.sock",
		"/etc/cni/net.dx":         "/etc/cni/net.dx",
		"/var/run/netns":          "/var/run/netns",
	}
	for in, want := range cases {
		if got := r.nodePath(in); got != want {
			t.Errorf("nodePath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSeekTail(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "log")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_, _ = f.WriteString("a\nb\nc\n")
	_, _ = f.Seek(0, 0)
	seekTail(f, 2)
	b := make([]byte, 16)
	n, _ := f.Read(b)
	if string(b[:n]) != "b\nc\n" {
		t.Fatalf("tail 2 = %q", b[:n])
	}
}

func TestStopGrace(t *testing.T) {
	i64 := func(v int64) *int64 { return &v }
	cases := []struct {
		del, spec *int64
		want      time.Duration
	}{
		{nil, nil, 30 * time.Second},
		{nil, i64(5), 5 * time.Second},
		{i64(20), i64(5), 20 * time.Second},
		{i64(0), i64(5), minStopGrace}, // force delete: still SIGTERM and 2 s, as the kubelet
		{nil, i64(0), minStopGrace},
	}
	for _, c := range cases {
		p := &v1.Pod{}
		p.DeletionGracePeriodSeconds = c.del
		p.Spec.TerminationGracePeriodSeconds = c.spec
		if got := stopGrace(p); got != c.want {
			t.Errorf("stopGrace(del %v, spec %v) = %v, want %v", c.del, c.spec, got, c.want)
		}
	}
}

// A container that cleans up on SIGTERM gets to finish it when its pod is force-deleted.
func TestForceDeleteStillSendsTerm(t *testing.T) {
	done := filepath.Join(t.TempDir(), "cleaned-up")
	cmd := exec.Command("sh", "-c", `trap 'sleep 0.5; touch "$0"; exit 0' TERM; while :; do sleep 0.1; done`, done)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = cmd.Wait() }()
	time.Sleep(200 * time.Millisecond) // let the shell set its trap
	zero := int64(0)
	p := &v1.Pod{}
	p.DeletionGracePeriodSeconds = &zero
	w := &podWorker{r: &runner{}, pod: p, ctrs: []*ctrState{{running: true, pid: cmd.Process.Pid}}}
	w.killAll(stopGrace(p))
	if _, err := os.Stat(done); err != nil {
		t.Errorf("container was killed before its SIGTERM handler finished: %v", err)
	}
}
