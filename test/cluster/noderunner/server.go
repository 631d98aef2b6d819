package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// serveAPI: the part of the kubelet API the apiserver proxies for `kubectl logs`
// (/containerLogs/<ns>/<pod>/<container>), over TLS with client certificates from the cluster CA.
func (r *runner) serveAPI() {
	if r.cfg.tlsCert == "" {
		return
	}
	pool := x509.NewCertPool()
	if b, err := os.ReadFile(r.cfg.clientCA); err == nil {
		pool.AppendCertsFromPEM(b)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(rw http.ResponseWriter, _ *http.Request) { fmt.Fprintln(rw, "ok") })
	mux.HandleFunc("/containerLogs/", r.authed(r.handleLogs))
	mux.HandleFunc("/exec/", r.authed(r.handleExec))
	mux.HandleFunc("/portForward/", r.authed(r.handlePortForward))
	srv := &http.Server{Addr: net.JoinHostPort(r.cfg.nodeIP, strconv.Itoa(r.cfg.port)), Handler: mux,
		TLSConfig: &tls.Config{ClientCAs: pool, ClientAuth: tls.VerifyClientCertIfGiven}}
	for {
		err := srv.ListenAndServeTLS(r.cfg.tlsCert, r.cfg.tlsKey)
		log.Printf("kubelet API: %v", err)
		time.Sleep(2 * time.Second)
	}
}

// authed: only clients with a certificate from the cluster CA (the apiserver) get in.
func (r *runner) authed(h http.HandlerFunc) http.HandlerFunc {
	return func(rw http.ResponseWriter, req *http.Request) {
		if req.TLS == nil || len(req.TLS.PeerCertificates) == 0 {
			http.Error(rw, "client certificate required", http.StatusUnauthorized)
			return
		}
		h(rw, req)
	}
}

func (r *runner) handleLogs(rw http.ResponseWriter, req *http.Request) {
	parts := strings.Split(strings.TrimPrefix(req.URL.Path, "/containerLogs/"), "/")
	if len(parts) != 3 {
		http.Error(rw, "want /containerLogs/<ns>/<pod>/<container>", http.StatusBadRequest)
		return
	}
	var dir string
	if w := r.findWorker(parts[0], parts[1]); w != nil {
		dir = w.dir
	}
	if dir == "" {
		http.Error(rw, "pod not found on this node", http.StatusNotFound)
		return
	}
	f, err := os.Open(filepath.Join(dir, "logs", parts[2]+".log"))
	if err != nil {
		http.Error(rw, "no logs for container "+parts[2], http.StatusNotFound)
		return
	}
	defer f.Close()
	q := req.URL.Query()
	if n, err := strconv.Atoi(q.Get("tailLines")); err == nil && n >= 0 {
		seekTail(f, n)
	}
	rw.Header().Set("Content-Type", "text/plain")
	_, _ = io.Copy(rw, f)
	if q.Get("follow") != "true" {
		return
	}
	fl, _ := rw.(http.Flusher)
	for {
		if fl != nil {
			fl.Flush()
		}
		select {
		case <-req.Context().Done():
			return
		case <-time.After(500 * time.Millisecond):
		}
		if _, err := io.Copy(rw, f); err != nil {
			return
		}
	}
}

func seekTail(f *os.File, n int) {
	b, err := io.ReadAll(f)
	if err != nil {
		return
	}
	end := len(b)
	if end > 0 && b[end-1] == '\n' {
		end--
	}
	cnt := 0
	pos := 0
	for i := end - 1; i >= 0; i-- {
		if b[i] == '\n' {
			cnt++
			if cnt == n {
				pos = i + 1
				break
			}
		}
	}
	if n == 0 {
		pos = len(b)
	}
	_, _ = f.Seek(int64(pos), io.SeekStart)
}
