package k8s

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// overlays are the kustomizations users apply.
var overlays = []string{"overlays/single-redis", "overlays/sentinel"}

// Objects is one rendered overlay, each object decoded into its k8s.io/api
// type, by name.
type Objects struct {
	Namespaces   map[string]*corev1.Namespace
	ConfigMaps   map[string]*corev1.ConfigMap
	Secrets      map[string]*corev1.Secret
	Services     map[string]*corev1.Service
	Deployments  map[string]*appsv1.Deployment
	StatefulSets map[string]*appsv1.StatefulSet
	PDBs         map[string]*policyv1.PodDisruptionBudget
	HPAs         map[string]*autoscalingv2.HorizontalPodAutoscaler
	Ingresses    map[string]*networkingv1.Ingress
	Policies     map[string]*networkingv1.NetworkPolicy
}

// render builds overlay with kustomize, from a copy of this directory in
// memory in which base/secrets.env is secrets.env.example (the real one is
// not in git), and decodes every object strictly: a field its type does not
// have fails the test, as the API server would reject it.
func render(t *testing.T, overlay string) *Objects {
	t.Helper()
	mem := filesys.MakeFsInMemory()
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return mem.WriteFile(filepath.Join("/k8s", path), b)
	})
	if err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile("base/secrets.env.example")
	if err != nil {
		t.Fatal(err)
	}
	if err := mem.WriteFile("/k8s/base/secrets.env", example); err != nil {
		t.Fatal(err)
	}
	m, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(mem, filepath.Join("/k8s", overlay))
	if err != nil {
		t.Fatalf("kustomize build %s: %v", overlay, err)
	}
	o := &Objects{
		Namespaces: map[string]*corev1.Namespace{}, ConfigMaps: map[string]*corev1.ConfigMap{},
		Secrets: map[string]*corev1.Secret{}, Services: map[string]*corev1.Service{},
		Deployments: map[string]*appsv1.Deployment{}, StatefulSets: map[string]*appsv1.StatefulSet{},
		PDBs: map[string]*policyv1.PodDisruptionBudget{}, HPAs: map[string]*autoscalingv2.HorizontalPodAutoscaler{},
		Ingresses: map[string]*networkingv1.Ingress{}, Policies: map[string]*networkingv1.NetworkPolicy{},
	}
	for _, r := range m.Resources() {
		y, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		gvk := r.GetApiVersion() + "/" + r.GetKind()
		name := r.GetName()
		if ns := r.GetNamespace(); r.GetKind() != "Namespace" && ns != "cryptopulse" {
			t.Errorf("%s %s: namespace %q, want cryptopulse", gvk, name, ns)
		}
		var obj any
		switch gvk {
		case "v1/Namespace":
			obj = put(o.Namespaces, name)
		case "v1/ConfigMap":
			obj = put(o.ConfigMaps, name)
		case "v1/Secret":
			obj = put(o.Secrets, name)
		case "v1/Service":
			obj = put(o.Services, name)
		case "apps/v1/Deployment":
			obj = put(o.Deployments, name)
		case "apps/v1/StatefulSet":
			obj = put(o.StatefulSets, name)
		case "policy/v1/PodDisruptionBudget":
			obj = put(o.PDBs, name)
		case "autoscaling/v2/HorizontalPodAutoscaler":
			obj = put(o.HPAs, name)
		case "networking.k8s.io/v1/Ingress":
			obj = put(o.Ingresses, name)
		case "networking.k8s.io/v1/NetworkPolicy":
			obj = put(o.Policies, name)
		default:
			t.Errorf("%s %s: no k8s.io/api type known to this test; add one", gvk, name)
			continue
		}
		if err := yaml.UnmarshalStrict(y, obj); err != nil {
			t.Errorf("%s: %s %s does not decode strictly: %v\n%s", overlay, gvk, name, err, y)
		}
	}
	return o
}

// put adds a new T under name and returns it for decoding into.
func put[T any](m map[string]*T, name string) *T {
	v := new(T)
	m[name] = v
	return v
}

// Workload is a Deployment or StatefulSet, by what tests need of both.
type Workload struct {
	Kind, Name string
	Replicas   *int32
	Selector   map[string]string
	Pod        *corev1.PodTemplateSpec
}

// Workloads lists every Deployment and StatefulSet, sorted by name.
func (o *Objects) Workloads() []Workload {
	var out []Workload
	for n, d := range o.Deployments {
		out = append(out, Workload{"Deployment", n, d.Spec.Replicas, d.Spec.Selector.MatchLabels, &d.Spec.Template})
	}
	for n, s := range o.StatefulSets {
		out = append(out, Workload{"StatefulSet", n, s.Spec.Replicas, s.Spec.Selector.MatchLabels, &s.Spec.Template})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// ConfigMap returns the generated ConfigMap whose name (before kustomize's
// hash suffix, which references were rewritten to) is ref.
func (o *Objects) ConfigMap(t *testing.T, ref string) *corev1.ConfigMap {
	t.Helper()
	if cm, ok := o.ConfigMaps[ref]; ok {
		return cm
	}
	t.Fatalf("no ConfigMap %q (have %v)", ref, sortedKeys(o.ConfigMaps))
	return nil
}

// hashed finds the object whose generated name starts with base.
func hashed[T any](m map[string]*T, base string) (string, *T, error) {
	var found []string
	for n := range m {
		if len(n) > len(base)+1 && n[:len(base)+1] == base+"-" {
			found = append(found, n)
		}
	}
	if len(found) != 1 {
		return "", nil, fmt.Errorf("want one generated %q, found %v", base, found)
	}
	return found[0], m[found[0]], nil
}
