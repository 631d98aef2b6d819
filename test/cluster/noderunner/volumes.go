package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Volumes are directories under the pod's state dir (hostPath: the node's view of the host path),
// bind-mounted at their mountPath in the container's private mount namespace. ConfigMap, Secret,
// downwardAPI and projected volumes are rewritten periodically (like the kubelet's sync).

type fileData struct {
	data []byte
	mode os.FileMode
}

type tokenCache struct {
	token   string
	renewAt time.Time
}

func (w *podWorker) volDir(name string) string { return filepath.Join(w.dir, "volumes", name) }

// volumeSource returns the path to bind for a volume (as seen in the node's mount view).
func (w *podWorker) volumeSource(v *v1.Volume) string {
	if v.HostPath != nil {
		return v.HostPath.Path
	}
	return w.volDir(v.Name)
}

func (w *podWorker) prepareVolumes(pod *v1.Pod) error {
	for i := range pod.Spec.Volumes {
		v := &pod.Spec.Volumes[i]
		if err := w.prepareVolume(pod, v); err != nil {
			return fmt.Errorf("volume %q: %w", v.Name, err)
		}
	}
	return nil
}

func (w *podWorker) prepareVolume(pod *v1.Pod, v *v1.Volume) error {
	dir := w.volDir(v.Name)
	switch {
	case v.EmptyDir != nil:
		return os.MkdirAll(dir, 0o777)
	case v.HostPath != nil:
		t := v1.HostPathUnset
		if v.HostPath.Type != nil {
			t = *v.HostPath.Type
		}
		switch t {
		case v1.HostPathDirectoryOrCreate:
			return w.r.ensureMountpoint(v.HostPath.Path, true)
		case v1.HostPathFileOrCreate:
			return w.r.ensureMountpoint(v.HostPath.Path, false)
		case v1.HostPathDirectory, v1.HostPathFile, v1.HostPathSocket:
			if _, err := os.Stat(w.r.nodePath(v.HostPath.Path)); err != nil {
				return fmt.Errorf("hostPath %s: %v", v.HostPath.Path, err)
			}
		}
		return nil
	case v.ConfigMap != nil:
		files, err := w.configMapFiles(pod.Namespace, v.ConfigMap.Name, v.ConfigMap.Items, v.ConfigMap.Optional, v.ConfigMap.DefaultMode)
		if err != nil {
			return err
		}
		return writeVolume(dir, files)
	case v.Secret != nil:
		files, err := w.secretFiles(pod.Namespace, v.Secret.SecretName, v.Secret.Items, v.Secret.Optional, v.Secret.DefaultMode)
		if err != nil {
			return err
		}
		return writeVolume(dir, files)
	case v.DownwardAPI != nil:
		files, err := w.downwardFiles(pod, v.DownwardAPI.Items, v.DownwardAPI.DefaultMode)
		if err != nil {
			return err
		}
		return writeVolume(dir, files)
	case v.Projected != nil:
		files := map[string]fileData{}
		for _, s := range v.Projected.Sources {
			var part map[string]fileData
			var err error
			switch {
			case s.ServiceAccountToken != nil:
				part, err = w.tokenFiles(pod, v.Name, s.ServiceAccountToken)
			case s.ConfigMap != nil:
				part, err = w.configMapFiles(pod.Namespace, s.ConfigMap.Name, s.ConfigMap.Items, s.ConfigMap.Optional, v.Projected.DefaultMode)
			case s.Secret != nil:
				part, err = w.secretFiles(pod.Namespace, s.Secret.Name, s.Secret.Items, s.Secret.Optional, v.Projected.DefaultMode)
			case s.DownwardAPI != nil:
				part, err = w.downwardFiles(pod, s.DownwardAPI.Items, v.Projected.DefaultMode)
			default:
				err = fmt.Errorf("unsupported projected source")
			}
			if err != nil {
				return err
			}
			for k, f := range part {
				files[k] = f
			}
		}
		return writeVolume(dir, files)
	default:
		return fmt.Errorf("volume type not supported by ambit-noderunner (emptyDir, hostPath, configMap, secret, downwardAPI, projected are)")
	}
}

func mode(m *int32, def os.FileMode) os.FileMode {
	if m != nil {
		return os.FileMode(*m)
	}
	return def
}

func pick(data map[string][]byte, items []v1.KeyToPath, defMode *int32, what string) (map[string]fileData, error) {
	files := map[string]fileData{}
	if len(items) == 0 {
		for k, d := range data {
			files[k] = fileData{d, mode(defMode, 0o644)}
		}
		return files, nil
	}
	for _, it := range items {
		d, ok := data[it.Key]
		if !ok {
			return nil, fmt.Errorf("%s has no key %q", what, it.Key)
		}
		files[it.Path] = fileData{d, mode(it.Mode, mode(defMode, 0o644))}
	}
	return files, nil
}

func (w *podWorker) configMapFiles(ns, name string, items []v1.KeyToPath, optional *bool, defMode *int32) (map[string]fileData, error) {
	cm, err := w.r.client.CoreV1().ConfigMaps(ns).Get(w.r.ctx, name, metav1.GetOptions{})
	if err != nil {
		if apierrors.IsNotFound(err) && optional != nil && *optional {
			return map[string]fileData{}, nil
		}
		return nil, fmt.Errorf("configmap %s/%s: %v", ns, name, err)
	}
	data := map[string][]byte{}
	for k, v := range cm.Data {
		data[k] = []byte(v)
	}
	for k, v := range cm.BinaryData {
		data[k] = v
	}
	return pick(data, items, defMode, "configmap "+name)
}

func (w *podWorker) secretFiles(ns, name string, items []v1.KeyToPath, optional *bool, defMode *int32) (map[string]fileData, error) {
	s, err := w.r.client.CoreV1().Secrets(ns).Get(w.r.ctx, name, metav1.GetOptions{})
	if err != nil {
		if apierrors.IsNotFound(err) && optional != nil && *optional {
			return map[string]fileData{}, nil
		}
		return nil, fmt.Errorf("secret %s/%s: %v", ns, name, err)
	}
	return pick(s.Data, items, defMode, "secret "+name)
}

func (w *podWorker) downwardFiles(pod *v1.Pod, items []v1.DownwardAPIVolumeFile, defMode *int32) (map[string]fileData, error) {
	files := map[string]fileData{}
	for _, it := range items {
		var val string
		var err error
		switch {
		case it.FieldRef != nil:
			val, err = w.fieldValue(pod, it.FieldRef.FieldPath)
		case it.ResourceFieldRef != nil:
			val, err = resourceValue(pod, it.ResourceFieldRef)
		}
		if err != nil {
			return nil, err
		}
		files[it.Path] = fileData{[]byte(val), mode(it.Mode, mode(defMode, 0o644))}
	}
	return files, nil
}

func (w *podWorker) tokenFiles(pod *v1.Pod, vol string, p *v1.ServiceAccountTokenProjection) (map[string]fileData, error) {
	key := vol + "/" + p.Path
	w.mu.Lock()
	tc, ok := w.tokens[key]
	w.mu.Unlock()
	if !ok || time.Now().After(tc.renewAt) {
		exp := int64(3607)
		if p.ExpirationSeconds != nil {
			exp = *p.ExpirationSeconds
		}
		var aud []string
		if p.Audience != "" {
			aud = []string{p.Audience}
		}
		sa := pod.Spec.ServiceAccountName
		if sa == "" {
			sa = "default"
		}
		tr, err := w.r.client.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(w.r.ctx, sa, &authv1.TokenRequest{
			Spec: authv1.TokenRequestSpec{Audiences: aud, ExpirationSeconds: &exp,
				BoundObjectRef: &authv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID}},
		}, metav1.CreateOptions{})
		if err != nil {
			return nil, fmt.Errorf("token for serviceaccount %s/%s: %v", pod.Namespace, sa, err)
		}
		tc = tokenCache{token: tr.Status.Token, renewAt: time.Now().Add(time.Duration(exp*8/10) * time.Second)}
		w.mu.Lock()
		w.tokens[key] = tc
		w.mu.Unlock()
	}
	return map[string]fileData{p.Path: {[]byte(tc.token), 0o600}}, nil
}

// writeVolume writes files atomically (temp + rename); files no longer listed are removed.
func writeVolume(dir string, files map[string]fileData) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	want := map[string]bool{}
	for rel, f := range files {
		rel = filepath.Clean(rel)
		if strings.HasPrefix(rel, "..") || filepath.IsAbs(rel) {
			return fmt.Errorf("bad path %q", rel)
		}
		want[rel] = true
		p := filepath.Join(dir, rel)
		if old, err := os.ReadFile(p); err == nil && string(old) == string(f.data) {
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		tmp := filepath.Join(filepath.Dir(p), ".tmp-"+filepath.Base(p))
		if err := os.WriteFile(tmp, f.data, f.mode); err != nil {
			return err
		}
		_ = os.Chmod(tmp, f.mode)
		if err := os.Rename(tmp, p); err != nil {
			return err
		}
	}
	_ = filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		if !want[rel] {
			os.Remove(p)
		}
		return nil
	})
	return nil
}

// ---------------------------------------------------------------- env

func (w *podWorker) fieldValue(pod *v1.Pod, path string) (string, error) {
	fmtMap := func(m map[string]string) string {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var b strings.Builder
		for _, k := range keys {
			fmt.Fprintf(&b, "%s=%s\n", k, strconv.Quote(m[k]))
		}
		return b.String()
	}
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "metadata.labels":
		return fmtMap(pod.Labels), nil
	case "metadata.annotations":
		return fmtMap(pod.Annotations), nil
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.hostIP", "status.hostIPs":
		return w.r.cfg.nodeIP, nil
	case "status.podIP", "status.podIPs":
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.podIP, nil
	}
	if strings.HasPrefix(path, "metadata.labels['") && strings.HasSuffix(path, "']") {
		return pod.Labels[path[len("metadata.labels['"):len(path)-2]], nil
	}
	if strings.HasPrefix(path, "metadata.annotations['") && strings.HasSuffix(path, "']") {
		return pod.Annotations[path[len("metadata.annotations['"):len(path)-2]], nil
	}
	return "", fmt.Errorf("unsupported fieldRef %q", path)
}

func resourceValue(pod *v1.Pod, ref *v1.ResourceFieldSelector) (string, error) {
	var c *v1.Container
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == ref.ContainerName || (ref.ContainerName == "" && i == 0) {
			c = &pod.Spec.Containers[i]
		}
	}
	var q resource.Quantity
	if c != nil {
		parts := strings.SplitN(ref.Resource, ".", 2)
		if len(parts) == 2 {
			rl := c.Resources.Limits
			if parts[0] == "requests" {
				rl = c.Resources.Requests
			}
			q = rl[v1.ResourceName(parts[1])]
		}
	}
	if q.IsZero() { // node allocatable, as the kubelet does for unset limits
		if strings.HasSuffix(ref.Resource, "cpu") {
			q = resource.MustParse("8")
		} else {
			q = resource.MustParse("16Gi")
		}
	}
	div := ref.Divisor
	if div.IsZero() {
		div = resource.MustParse("1")
	}
	if strings.HasSuffix(ref.Resource, "cpu") {
		v := (q.MilliValue() + div.MilliValue() - 1) / div.MilliValue()
		return strconv.FormatInt(v, 10), nil
	}
	v := (q.Value() + div.Value() - 1) / div.Value()
	return strconv.FormatInt(v, 10), nil
}

// containerEnv builds the environment like the kubelet (service env for kubernetes only).
func (w *podWorker) containerEnv(pod *v1.Pod, c *v1.Container) ([]string, error) {
	host, port, _ := strings.Cut(w.r.cfg.kubeSvc, ":")
	vars := []string{}
	vals := map[string]string{}
	set := func(k, v string) {
		if _, ok := vals[k]; !ok {
			vars = append(vars, k)
		}
		vals[k] = v
	}
	set("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	set("HOME", "/root")
	hn := pod.Spec.Hostname
	if hn == "" {
		hn = pod.Name
	}
	if pod.Spec.HostNetwork {
		hn = w.r.cfg.node
	}
	set("HOSTNAME", hn)
	set("KUBERNETES_SERVICE_HOST", host)
	set("KUBERNETES_SERVICE_PORT", port)
	set("KUBERNETES_SERVICE_PORT_HTTPS", port)
	set("KUBERNETES_PORT", "tcp://"+w.r.cfg.kubeSvc)
	set("KUBERNETES_PORT_443_TCP", "tcp://"+w.r.cfg.kubeSvc)
	set("KUBERNETES_PORT_443_TCP_PROTO", "tcp")
	set("KUBERNETES_PORT_443_TCP_PORT", port)
	set("KUBERNETES_PORT_443_TCP_ADDR", host)
	for _, ef := range c.EnvFrom {
		var data map[string]string
		switch {
		case ef.ConfigMapRef != nil:
			cm, err := w.r.client.CoreV1().ConfigMaps(pod.Namespace).Get(w.r.ctx, ef.ConfigMapRef.Name, metav1.GetOptions{})
			if err != nil {
				if ef.ConfigMapRef.Optional != nil && *ef.ConfigMapRef.Optional {
					continue
				}
				return nil, err
			}
			data = cm.Data
		case ef.SecretRef != nil:
			s, err := w.r.client.CoreV1().Secrets(pod.Namespace).Get(w.r.ctx, ef.SecretRef.Name, metav1.GetOptions{})
			if err != nil {
				if ef.SecretRef.Optional != nil && *ef.SecretRef.Optional {
					continue
				}
				return nil, err
			}
			data = map[string]string{}
			for k, v := range s.Data {
				data[k] = string(v)
			}
		}
		for k, v := range data {
			set(ef.Prefix+k, v)
		}
	}
	for _, e := range c.Env {
		val := e.Value
		if e.ValueFrom == nil {
			val = expandVars(val, vals)
		} else {
			var err error
			switch {
			case e.ValueFrom.FieldRef != nil:
				val, err = w.fieldValue(pod, e.ValueFrom.FieldRef.FieldPath)
			case e.ValueFrom.ResourceFieldRef != nil:
				ref := *e.ValueFrom.ResourceFieldRef
				if ref.ContainerName == "" {
					ref.ContainerName = c.Name
				}
				val, err = resourceValue(pod, &ref)
			case e.ValueFrom.ConfigMapKeyRef != nil:
				r := e.ValueFrom.ConfigMapKeyRef
				cm, gerr := w.r.client.CoreV1().ConfigMaps(pod.Namespace).Get(w.r.ctx, r.Name, metav1.GetOptions{})
				if gerr == nil {
					v, ok := cm.Data[r.Key]
					if !ok && !(r.Optional != nil && *r.Optional) {
						gerr = fmt.Errorf("configmap %s has no key %s", r.Name, r.Key)
					}
					val = v
				}
				if gerr != nil && !(r.Optional != nil && *r.Optional) {
					err = gerr
				}
			case e.ValueFrom.SecretKeyRef != nil:
				r := e.ValueFrom.SecretKeyRef
				s, gerr := w.r.client.CoreV1().Secrets(pod.Namespace).Get(w.r.ctx, r.Name, metav1.GetOptions{})
				if gerr == nil {
					v, ok := s.Data[r.Key]
					if !ok && !(r.Optional != nil && *r.Optional) {
						gerr = fmt.Errorf("secret %s has no key %s", r.Name, r.Key)
					}
					val = string(v)
				}
				if gerr != nil && !(r.Optional != nil && *r.Optional) {
					err = gerr
				}
			}
			if err != nil {
				return nil, fmt.Errorf("env %s: %v", e.Name, err)
			}
		}
		set(e.Name, val)
	}
	env := make([]string, 0, len(vars))
	for _, k := range vars {
		env = append(env, k+"="+vals[k])
	}
	return env, nil
}

// expandVars does Kubernetes' $(VAR) expansion ($$ escapes).
func expandVars(s string, vals map[string]string) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		if s[i+1] == '$' {
			b.WriteByte('$')
			i++
			continue
		}
		if s[i+1] == '(' {
			if j := strings.IndexByte(s[i+2:], ')'); j >= 0 {
				name := s[i+2 : i+2+j]
				if v, ok := vals[name]; ok {
					b.WriteString(v)
					i += 2 + j
					continue
				}
			}
		}
		b.WriteByte('$')
	}
	return b.String()
}
