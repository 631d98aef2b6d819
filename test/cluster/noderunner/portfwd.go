package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// portfwdMain: listen on an address in the current netns, dial each connection from inside
// another netns (so the host reaches the apiserver on 127.0.0.1 without any host address).
func portfwdMain(args []string) {
	fs := flag.NewFlagSet("portfwd", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:16443", "listen address (current netns)")
	nsPath := fs.String("netns", "", "netns file to dial from")
	connect := fs.String("connect", "127.0.0.1:16443", "address to dial inside -netns")
	_ = fs.Parse(args)
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("portfwd: listen %s: %v", *listen, err)
	}
	log.Printf("portfwd: %s -> %s in %s", *listen, *connect, *nsPath)
	for {
		c, err := ln.Accept()
		if err != nil {
			log.Printf("portfwd: accept: %v", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		go func() {
			up, err := dialInNetns(*nsPath, *connect)
			if err != nil {
				log.Printf("portfwd: dial %s: %v", *connect, err)
				c.Close()
				return
			}
			splice(c, up)
		}()
	}
}

func splice(a, b net.Conn) {
	var wg sync.WaitGroup
	cp := func(dst, src net.Conn) {
		defer wg.Done()
		_, _ = io.Copy(dst, src)
		if t, ok := dst.(*net.TCPConn); ok {
			_ = t.CloseWrite()
		}
	}
	wg.Add(2)
	go cp(a, b)
	go cp(b, a)
	wg.Wait()
	a.Close()
	b.Close()
}

// dialInNetns creates the socket on a thread switched into nsPath, then switches back.
func dialInNetns(nsPath, addr string) (net.Conn, error) {
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- res{nil, err}
			return
		}
		defer unix.Close(orig)
		target, err := unix.Open(nsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			ch <- res{nil, err}
			return
		}
		defer unix.Close(target)
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			ch <- res{nil, fmt.Errorf("setns: %w", err)}
			return
		}
		c, derr := net.DialTimeout("tcp", addr, 5*time.Second)
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			// leave the thread locked: it is destroyed when this goroutine exits
			ch <- res{c, derr}
			return
		}
		runtime.UnlockOSThread()
		ch <- res{c, derr}
	}()
	r := <-ch
	return r.c, r.err
}
