// The etcd server, built from the same pinned module graph as kube-apiserver (k8s.io/kubernetes
// v1.34 depends on go.etcd.io/etcd/server/v3 v3.6), so the two always match.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
