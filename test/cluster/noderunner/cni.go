package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// The CNI chain of the node, invoked like a container runtime does: CNI_* environment, the
// plugin's config (with name, cniVersion and prevResult) on stdin, plugins from CNI_PATH.

type confList struct {
	CNIVersion string                   `json:"cniVersion"`
	Name       string                   `json:"name"`
	Plugins    []map[string]interface{} `json:"plugins"`
}

func (r *runner) loadConfList() (*confList, error) {
	entries, err := os.ReadDir(r.cfg.cniConfDir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		n := e.Name()
		if strings.HasSuffix(n, ".conflist") || strings.HasSuffix(n, ".conf") || strings.HasSuffix(n, ".json") {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(r.cfg.cniConfDir, n))
		if err != nil {
			continue
		}
		var cl confList
		if strings.HasSuffix(n, ".conflist") {
			if err := json.Unmarshal(b, &cl); err != nil {
				return nil, fmt.Errorf("%s: %v", n, err)
			}
		} else {
			var one map[string]interface{}
			if err := json.Unmarshal(b, &one); err != nil {
				return nil, fmt.Errorf("%s: %v", n, err)
			}
			cl.CNIVersion, _ = one["cniVersion"].(string)
			cl.Name, _ = one["name"].(string)
			cl.Plugins = []map[string]interface{}{one}
		}
		if len(cl.Plugins) == 0 {
			continue
		}
		return &cl, nil
	}
	return nil, fmt.Errorf("no CNI network config in %s", r.cfg.cniConfDir)
}

type cniArgs struct {
	containerID, netns, ifname, podNS, podName, podUID string
}

func (r *runner) cniExec(cmd string, a cniArgs, conf map[string]interface{}) ([]byte, error) {
	typ, _ := conf["type"].(string)
	var bin string
	for _, d := range filepath.SplitList(r.cfg.cniBinDirs) {
		if st, err := os.Stat(filepath.Join(d, typ)); err == nil && !st.IsDir() {
			bin = filepath.Join(d, typ)
			break
		}
	}
	if bin == "" {
		return nil, fmt.Errorf("CNI plugin %q not found in %s", typ, r.cfg.cniBinDirs)
	}
	stdin, _ := json.Marshal(conf)
	// the plugin sees the node's view of the host dirs (/etc/cni/net.d, /var/run/ambit, ...)
	argv := append([]string{"unshare", "--mount", "--propagation", "slave", "--", "/bin/sh", "-c",
		r.nodeViewScript(nil, ""), "sh"}, bin)
	c := exec.Command(argv[0], argv[1:]...)
	c.Env = append(os.Environ(),
		"CNI_COMMAND="+cmd,
		"CNI_CONTAINERID="+a.containerID,
		"CNI_NETNS="+a.netns,
		"CNI_IFNAME="+a.ifname,
		"CNI_PATH="+cniPathInNode(r.cfg.cniBinDirs, r),
		fmt.Sprintf("CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAMESPACE=%s;K8S_POD_NAME=%s;K8S_POD_INFRA_CONTAINER_ID=%s;K8S_POD_UID=%s",
			a.podNS, a.podName, a.containerID, a.podUID),
	)
	c.Stdin = bytes.NewReader(stdin)
	var out, errb bytes.Buffer
	c.Stdout = &out
	c.Stderr = &errb
	done := make(chan error, 1)
	if err := c.Start(); err != nil {
		return nil, err
	}
	go func() { done <- c.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			msg := strings.TrimSpace(out.String())
			var e struct {
				Code    int    `json:"code"`
				Msg     string `json:"msg"`
				Details string `json:"details"`
			}
			if json.Unmarshal(out.Bytes(), &e) == nil && e.Msg != "" {
				msg = fmt.Sprintf("code %d: %s %s", e.Code, e.Msg, e.Details)
			}
			return nil, fmt.Errorf("CNI %s %s: %v: %s %s", typ, cmd, err, msg, strings.TrimSpace(errb.String()))
		}
	case <-time.After(60 * time.Second):
		_ = c.Process.Kill()
		return nil, fmt.Errorf("CNI %s %s: timed out", typ, cmd)
	}
	return out.Bytes(), nil
}

// cniPathInNode: inside the plugin's mount namespace the node's /opt/cni/bin is at its real path.
func cniPathInNode(dirs string, r *runner) string {
	var res []string
	for _, d := range filepath.SplitList(dirs) {
		if r.cfg.nodeRoot != "" && strings.HasPrefix(d, r.cfg.nodeRoot+"/") {
			d = strings.TrimPrefix(d, r.cfg.nodeRoot)
		}
		res = append(res, d)
	}
	return strings.Join(res, ":")
}

func pluginConf(cl *confList, i int, prev interface{}) map[string]interface{} {
	conf := map[string]interface{}{}
	for k, v := range cl.Plugins[i] {
		conf[k] = v
	}
	conf["cniVersion"] = cl.CNIVersion
	conf["name"] = cl.Name
	if prev != nil {
		conf["prevResult"] = prev
	}
	return conf
}

// cniAdd runs ADD through the chain; returns the final result (raw JSON) and the pod IP.
func (r *runner) cniAdd(a cniArgs) (json.RawMessage, *confList, string, error) {
	cl, err := r.loadConfList()
	if err != nil {
		return nil, nil, "", err
	}
	var prev interface{}
	var raw []byte
	for i := range cl.Plugins {
		out, err := r.cniExec("ADD", a, pluginConf(cl, i, prev))
		if err != nil {
			// undo what the chain did so far
			r.cniDel(a, cl, raw)
			return nil, nil, "", err
		}
		var res interface{}
		if err := json.Unmarshal(out, &res); err != nil {
			r.cniDel(a, cl, raw)
			return nil, nil, "", fmt.Errorf("CNI result of plugin %d: %v", i, err)
		}
		prev = res
		raw = out
	}
	var res struct {
		IPs []struct {
			Address string `json:"address"`
		} `json:"ips"`
	}
	_ = json.Unmarshal(raw, &res)
	ip := ""
	for _, x := range res.IPs {
		if a := strings.SplitN(x.Address, "/", 2)[0]; a != "" && !strings.Contains(a, ":") {
			ip = a
			break
		}
	}
	if ip == "" {
		r.cniDel(a, cl, raw)
		return nil, nil, "", fmt.Errorf("CNI result has no IPv4 address: %s", raw)
	}
	return raw, cl, ip, nil
}

// cniDel runs DEL through the chain in reverse order; errors are logged, not fatal.
func (r *runner) cniDel(a cniArgs, cl *confList, prevRaw []byte) []error {
	if cl == nil {
		var err error
		if cl, err = r.loadConfList(); err != nil {
			return []error{err}
		}
	}
	var prev interface{}
	if len(prevRaw) > 0 {
		_ = json.Unmarshal(prevRaw, &prev)
	}
	var errs []error
	for i := len(cl.Plugins) - 1; i >= 0; i-- {
		if _, err := r.cniExec("DEL", a, pluginConf(cl, i, prev)); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}
