package main

import (
	"context"
	"encoding/binary"
	"flag"
	"log"
	"net"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
)

// lbMain: a minimal LoadBalancer controller for the test cluster. Each Service of type
// LoadBalancer gets the next free address of -cidr in status.loadBalancer.ingress; kube-proxy on
// the nodes programs it, and the control-plane netns routes the range to a node, so a client in
// the control-plane netns plays "outside the cluster".
func lbMain(args []string) {
	fs := flag.NewFlagSet("lb", flag.ExitOnError)
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig")
	cidr := fs.String("cidr", "10.240.1.0/24", "address range for LoadBalancer services")
	_ = fs.Parse(args)
	rc, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		log.Fatal(err)
	}
	client := kubernetes.NewForConfigOrDie(rc)
	_, ipnet, err := net.ParseCIDR(*cidr)
	if err != nil {
		log.Fatal(err)
	}
	base := binary.BigEndian.Uint32(ipnet.IP.To4())
	ones, bits := ipnet.Mask.Size()
	size := uint32(1) << uint(bits-ones)

	var mu sync.Mutex
	factory := informers.NewSharedInformerFactory(client, 0)
	inf := factory.Core().V1().Services().Informer()
	sync1 := func(o interface{}) {
		svc, ok := o.(*v1.Service)
		if !ok || svc.Spec.Type != v1.ServiceTypeLoadBalancer || len(svc.Status.LoadBalancer.Ingress) > 0 {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		used := map[string]bool{}
		for _, x := range inf.GetStore().List() {
			for _, in := range x.(*v1.Service).Status.LoadBalancer.Ingress {
				used[in.IP] = true
			}
		}
		want := svc.Spec.LoadBalancerIP
		if want == "" {
			for i := uint32(1); i < size-1; i++ {
				ip := make(net.IP, 4)
				binary.BigEndian.PutUint32(ip, base+i)
				if !used[ip.String()] {
					want = ip.String()
					break
				}
			}
		}
		if want == "" {
			log.Printf("lb: no free address for %s/%s", svc.Namespace, svc.Name)
			return
		}
		s := svc.DeepCopy()
		ipMode := v1.LoadBalancerIPModeVIP
		s.Status.LoadBalancer.Ingress = []v1.LoadBalancerIngress{{IP: want, IPMode: &ipMode}}
		if _, err := client.CoreV1().Services(s.Namespace).UpdateStatus(context.Background(), s, metav1.UpdateOptions{}); err != nil {
			log.Printf("lb: %s/%s: %v", s.Namespace, s.Name, err)
			return
		}
		// keep the store consistent until the watch delivers the update
		_ = inf.GetStore().Update(s)
		log.Printf("lb: %s/%s -> %s", s.Namespace, s.Name, want)
	}
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    sync1,
		UpdateFunc: func(_, o interface{}) { sync1(o) },
	})
	factory.Start(nil)
	for {
		time.Sleep(time.Hour)
	}
}
