// Command pause is the first process of every pod sandbox: it holds the pod's namespaces open
// and does nothing else. It is kubesweep's own small implementation, built statically
// (CGO_ENABLED=0) by `invoke artifacts` and shipped as registry.k8s.io/pause:<pause_version>.
//
// As PID 1 of the sandbox it has two duties:
//   - exit 0 on SIGINT or SIGTERM, so that stopping a sandbox is quick and clean;
//   - reap zombies: any process orphaned inside the pod is re-parented to PID 1, and its exit
//     status must be collected (wait4) or it stays a zombie for the life of the pod.
package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "-v", "--version", "version":
			fmt.Printf("pause %s (kubesweep)\n", version)
			return
		default:
			fmt.Fprintf(os.Stderr, "usage: %s [-v]\n", os.Args[0])
			os.Exit(2)
		}
	}
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "pause: warning: not PID 1, orphans will not be re-parented to me")
	}

	signals := make(chan os.Signal, 16)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	// Children that exited before Notify was registered sent their SIGCHLD to nobody.
	reapAll()
	for sig := range signals {
		if sig == syscall.SIGCHLD {
			reapAll()
			continue
		}
		os.Exit(0) // SIGINT or SIGTERM
	}
}

// reapAll collects the exit status of every child that has exited, without blocking.
// Several exits can be coalesced into one SIGCHLD, hence the loop.
func reapAll() {
	for {
		var status syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil || pid <= 0 { // ECHILD: no children at all; 0: none has exited yet
			return
		}
	}
}
