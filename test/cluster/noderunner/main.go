// ambit-noderunner: test-cluster helper that plays the kubelet's part for one node of the local
// cluster (test/cluster), and a loopback forwarder into a network namespace. See ../README.md.
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: ambit-noderunner run|lb|portfwd [flags]")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "run":
		runMain(os.Args[2:])
	case "lb":
		lbMain(os.Args[2:])
	case "portfwd":
		portfwdMain(os.Args[2:])
	default:
		fmt.Fprintf(os.Stderr, "ambit-noderunner: unknown command %q\n", os.Args[1])
		os.Exit(2)
	}
}
