package k8s

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// peer is a pod that may try to connect: its namespace (with the label
// Kubernetes puts on every namespace) and its labels.
type peer struct {
	desc      string
	namespace string
	labels    map[string]string
}

// allowed reports whether the overlay's NetworkPolicies let from connect to
// a pod of workload to on port, as NetworkPolicy semantics say: a pod no
// policy selects takes everything; otherwise some rule of a policy that
// selects it must admit the peer and the port (named ports resolve on the
// target's containers).
func allowed(t *testing.T, o *Objects, from peer, to Workload, port int32) bool {
	t.Helper()
	sel := func(ls *metav1.LabelSelector, set map[string]string) bool {
		s, err := metav1.LabelSelectorAsSelector(ls)
		if err != nil {
			t.Fatal(err)
		}
		return s.Matches(labels.Set(set))
	}
	selected := false
	for _, np := range o.Policies {
		if !sel(&np.Spec.PodSelector, to.Pod.Labels) {
			continue
		}
		selected = true
		for _, rule := range np.Spec.Ingress {
			if !portMatches(rule.Ports, to.Pod, port) {
				continue
			}
			if len(rule.From) == 0 {
				return true
			}
			for _, f := range rule.From {
				nsOK := f.NamespaceSelector == nil && from.namespace == np.Namespace ||
					f.NamespaceSelector != nil && sel(f.NamespaceSelector, map[string]string{"kubernetes.io/metadata.name": from.namespace})
				podOK := f.PodSelector == nil || sel(f.PodSelector, from.labels)
				if f.IPBlock == nil && nsOK && podOK {
					return true
				}
			}
		}
	}
	return !selected
}

func portMatches(ports []networkingv1.NetworkPolicyPort, pod *corev1.PodTemplateSpec, port int32) bool {
	if len(ports) == 0 {
		return true
	}
	for _, p := range ports {
		if p.Port == nil {
			return true
		}
		if p.Port.IntValue() == int(port) {
			return true
		}
		for _, c := range pod.Spec.Containers {
			for _, cp := range c.Ports {
				if cp.Name == p.Port.StrVal && cp.ContainerPort == port {
					return true
				}
			}
		}
	}
	return false
}

// TestNetworkPolicies: only auth and the gateways are reachable from the
// ingress controller; Redis, the sentinels and Postgres only from our own
// pods; nothing from elsewhere in the cluster, in our namespace or not.
func TestNetworkPolicies(t *testing.T) {
	ingress := peer{"ingress-nginx", "ingress-nginx", map[string]string{"app.kubernetes.io/name": "ingress-nginx"}}
	prometheus := peer{"Prometheus", "monitoring", map[string]string{"app.kubernetes.io/name": "prometheus"}}
	stranger := peer{"a pod of another namespace", "default", map[string]string{"app": "x"}}
	neighbour := peer{"another pod of our namespace", "cryptopulse", map[string]string{"app": "x"}}
	ours := func(name string) peer {
		return peer{name, "cryptopulse", map[string]string{"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "cryptopulse"}}
	}
	for _, ov := range overlays {
		o := render(t, ov)
		for _, to := range o.Workloads() {
			c := to.Pod.Spec.Containers[0]
			if len(c.Ports) == 0 {
				t.Fatalf("%s: %s exposes no port", ov, to.Name)
			}
			port := c.Ports[0].ContainerPort
			name := to.Pod.Labels["app.kubernetes.io/name"]
			var want map[string]bool
			switch name {
			case "auth", "gateway":
				want = map[string]bool{"ingress-nginx": true, "Prometheus": true}
			case "fetcher":
				want = map[string]bool{"Prometheus": true}
			case "redis":
				want = map[string]bool{"auth": true, "gateway": true, "fetcher": true}
				if ov == "overlays/sentinel" {
					want["redis"], want["redis-sentinel"] = true, true
				}
			case "redis-sentinel":
				want = map[string]bool{"auth": true, "gateway": true, "fetcher": true, "redis": true, "redis-sentinel": true}
			case "postgres":
				want = map[string]bool{"gateway": true, "fetcher": true}
			default:
				t.Fatalf("%s: %s: no expectation for pods named %q", ov, to.Name, name)
			}
			for _, from := range []peer{ingress, prometheus, stranger, neighbour, ours("auth"), ours("gateway"), ours("fetcher"), ours("redis"), ours("redis-sentinel"), ours("postgres")} {
				if got := allowed(t, o, from, to, port); got != want[from.desc] {
					t.Errorf("%s: %s may connect to %s %s:%d: %v, want %v", ov, from.desc, to.Kind, to.Name, port, got, want[from.desc])
				}
			}
		}
	}
}
