package k8s

import (
	"fmt"
	"net/url"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// ingressServices are the services the Ingress sends traffic to: they get
// readiness on /ready and a preStop pause.
var ingressServices = map[string]bool{"auth": true, "gateway": true}

// TestContainersAreHardened: every container of every workload has liveness
// and readiness probes, CPU and memory requests and limits (requests within
// limits), and runs as a non-root user with a read-only root filesystem, no
// privilege escalation and no capabilities: the restricted Pod Security
// Standard the namespace enforces.
func TestContainersAreHardened(t *testing.T) {
	for _, ov := range overlays {
		o := render(t, ov)
		if len(o.Workloads()) < 5 {
			t.Fatalf("%s: only %d workloads rendered", ov, len(o.Workloads()))
		}
		ns := o.Namespaces["cryptopulse"]
		if ns == nil || ns.Labels["pod-security.kubernetes.io/enforce"] != "restricted" {
			t.Errorf("%s: namespace cryptopulse missing or not labelled pod-security enforce=restricted", ov)
		}
		for _, w := range o.Workloads() {
			checkPod(t, ov+": "+w.Kind+" "+w.Name, w.Pod)
		}
	}
}

func checkPod(t *testing.T, where string, pod *corev1.PodTemplateSpec) {
	t.Helper()
	ps := pod.Spec.SecurityContext
	if ps == nil {
		ps = &corev1.PodSecurityContext{}
	}
	if pod.Spec.AutomountServiceAccountToken == nil || *pod.Spec.AutomountServiceAccountToken {
		t.Errorf("%s: automountServiceAccountToken should be false (nothing here talks to the API server)", where)
	}
	if len(pod.Spec.InitContainers) > 0 {
		t.Errorf("%s: init containers are not checked by this test; check them too", where)
	}
	for _, c := range pod.Spec.Containers {
		at := where + " container " + c.Name
		if c.LivenessProbe == nil {
			t.Errorf("%s: no livenessProbe", at)
		}
		if c.ReadinessProbe == nil {
			t.Errorf("%s: no readinessProbe", at)
		}
		for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
			lim, okL := c.Resources.Limits[res]
			req, okR := c.Resources.Requests[res]
			if !okL || !okR {
				t.Errorf("%s: %s request and limit must both be set (got request %v, limit %v)", at, res, okR, okL)
				continue
			}
			if req.Cmp(lim) > 0 {
				t.Errorf("%s: %s request %s above limit %s", at, res, req.String(), lim.String())
			}
		}
		cs := c.SecurityContext
		if cs == nil {
			t.Errorf("%s: no securityContext", at)
			continue
		}
		nonRoot := cs.RunAsNonRoot
		if nonRoot == nil {
			nonRoot = ps.RunAsNonRoot
		}
		uid := cs.RunAsUser
		if uid == nil {
			uid = ps.RunAsUser
		}
		if nonRoot == nil || !*nonRoot {
			t.Errorf("%s: runAsNonRoot is not true", at)
		}
		if uid == nil || *uid == 0 {
			t.Errorf("%s: runAsUser must be a numeric non-zero uid (the kubelet cannot check a user name)", at)
		}
		if cs.ReadOnlyRootFilesystem == nil || !*cs.ReadOnlyRootFilesystem {
			t.Errorf("%s: readOnlyRootFilesystem is not true", at)
		}
		if cs.AllowPrivilegeEscalation == nil || *cs.AllowPrivilegeEscalation {
			t.Errorf("%s: allowPrivilegeEscalation is not false", at)
		}
		if cs.Capabilities == nil || !slices.Equal(cs.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(cs.Capabilities.Add) > 0 {
			t.Errorf("%s: capabilities must drop ALL and add none", at)
		}
		seccomp := cs.SeccompProfile
		if seccomp == nil {
			seccomp = ps.SeccompProfile
		}
		if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("%s: seccompProfile RuntimeDefault missing", at)
		}
	}
}

// TestServicesGetEverySettingTheyRead: each service's container has every
// variable its config loader reads (found in services/<name> and
// libs/config by go/ast), from env, the ConfigMap or the Secret, so a new
// setting cannot be forgotten here. Every reference resolves.
func TestServicesGetEverySettingTheyRead(t *testing.T) {
	reads := settingsRead(t)
	for _, ov := range overlays {
		o := render(t, ov)
		for _, svc := range services {
			d := o.Deployments[svc]
			if d == nil {
				t.Fatalf("%s: no Deployment %s", ov, svc)
			}
			c := container(t, &d.Spec.Template, svc)
			env, err := effectiveEnv(o, c)
			if err != nil {
				t.Errorf("%s: Deployment %s: %v", ov, svc, err)
			}
			if missing := missingEnv(reads[svc], env); len(missing) > 0 {
				t.Errorf("%s: Deployment %s does not set %s, which services/%s reads; add it to base/config.env (or secrets.env.example and the Deployment's env)",
					ov, svc, strings.Join(missing, ", "), svc)
			}
		}
	}
}

// TestMissingEnvNamesEachVariable: the check above fails, naming each
// variable, when settings are left out.
func TestMissingEnvNamesEachVariable(t *testing.T) {
	reads := settingsRead(t)
	o := render(t, overlays[0])
	c := container(t, &o.Deployments["gateway"].Spec.Template, "gateway")
	env, err := effectiveEnv(o, c)
	if err != nil {
		t.Fatal(err)
	}
	delete(env, "BATCH_RESULT_TIMEOUT_MS")
	delete(env, "JWT_SECRET")
	got := missingEnv(reads["gateway"], env)
	if !slices.Equal(got, []string{"BATCH_RESULT_TIMEOUT_MS", "JWT_SECRET"}) {
		t.Fatalf("missingEnv = %v, want [BATCH_RESULT_TIMEOUT_MS JWT_SECRET]", got)
	}
}

// missingEnv lists the variables of reads that env lacks, sorted.
func missingEnv(reads []string, env map[string]string) []string {
	var out []string
	for _, k := range reads {
		if _, ok := env[k]; !ok {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// effectiveEnv is what a container's process sees, as far as the manifests
// tell: envFrom sources in order, then env (which wins). Values from a
// Secret are its data; a field or resource reference reads as "(ref)".
func effectiveEnv(o *Objects, c *corev1.Container) (map[string]string, error) {
	env := map[string]string{}
	var errs []string
	for _, from := range c.EnvFrom {
		switch {
		case from.ConfigMapRef != nil:
			cm, ok := o.ConfigMaps[from.ConfigMapRef.Name]
			if !ok {
				errs = append(errs, "envFrom: no ConfigMap "+from.ConfigMapRef.Name)
				continue
			}
			for k, v := range cm.Data {
				env[from.Prefix+k] = v
			}
		case from.SecretRef != nil:
			s, ok := o.Secrets[from.SecretRef.Name]
			if !ok {
				errs = append(errs, "envFrom: no Secret "+from.SecretRef.Name)
				continue
			}
			for k, v := range s.Data {
				env[from.Prefix+k] = string(v)
			}
		}
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = e.Value
		case e.ValueFrom.ConfigMapKeyRef != nil:
			ref := e.ValueFrom.ConfigMapKeyRef
			v, ok := o.ConfigMaps[ref.Name].Data[ref.Key]
			if o.ConfigMaps[ref.Name] == nil || !ok {
				if ref.Optional == nil || !*ref.Optional {
					errs = append(errs, fmt.Sprintf("%s: no key %s in ConfigMap %s", e.Name, ref.Key, ref.Name))
				}
				continue
			}
			env[e.Name] = v
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			s := o.Secrets[ref.Name]
			var v []byte
			ok := false
			if s != nil {
				v, ok = s.Data[ref.Key]
			}
			if !ok {
				if ref.Optional == nil || !*ref.Optional {
					errs = append(errs, fmt.Sprintf("%s: no key %s in Secret %s", e.Name, ref.Key, ref.Name))
				}
				continue
			}
			env[e.Name] = string(v)
		default:
			env[e.Name] = "(ref)"
		}
	}
	if len(errs) > 0 {
		return env, fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return env, nil
}

func container(t *testing.T, pod *corev1.PodTemplateSpec, name string) *corev1.Container {
	t.Helper()
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == name {
			return &pod.Spec.Containers[i]
		}
	}
	t.Fatalf("no container %q", name)
	return nil
}

// TestDeploymentsFollowTheServices: the image is the project's, the port is
// PORT, probes ask for paths the service serves (readiness on /ready behind
// the Ingress), and a pod outlives its drain: preStop pause plus the
// shutdown grace, and longer than a price request may wait.
func TestDeploymentsFollowTheServices(t *testing.T) {
	routes := routesServed(t)
	for _, ov := range overlays {
		o := render(t, ov)
		for _, svc := range services {
			d := o.Deployments[svc]
			if d == nil {
				t.Fatalf("%s: no Deployment %s", ov, svc)
			}
			at := ov + ": Deployment " + svc
			pod := &d.Spec.Template
			c := container(t, pod, svc)
			env, err := effectiveEnv(o, c)
			if err != nil {
				t.Fatalf("%s: %v", at, err)
			}
			if !strings.HasPrefix(c.Image, "cryptopulse/"+svc+":") {
				t.Errorf("%s: image %q, want cryptopulse/%s:<tag> (docker build --build-arg SERVICE=%s)", at, c.Image, svc, svc)
			}
			port := mustInt(t, at, env, "PORT")
			if len(c.Ports) != 1 || c.Ports[0].ContainerPort != int32(port) || c.Ports[0].Name != "http" {
				t.Errorf("%s: want one containerPort %d named http (PORT), got %+v", at, port, c.Ports)
			}
			for kind, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe, "startup": c.StartupProbe} {
				if p == nil {
					if kind != "startup" {
						t.Errorf("%s: no %s probe", at, kind)
					}
					continue
				}
				if p.HTTPGet == nil {
					t.Errorf("%s: %s probe is not an HTTP GET", at, kind)
					continue
				}
				if !routes[svc][p.HTTPGet.Path] {
					t.Errorf("%s: %s probe asks for %s, which services/%s does not serve (it serves %v)", at, kind, p.HTTPGet.Path, svc, sortedKeys(routes[svc]))
				}
				if p.HTTPGet.Port != intstr.FromString("http") && p.HTTPGet.Port != intstr.FromInt32(int32(port)) {
					t.Errorf("%s: %s probe on port %s, not the service's", at, kind, p.HTTPGet.Port.String())
				}
			}
			if c.LivenessProbe != nil && c.LivenessProbe.HTTPGet != nil && c.LivenessProbe.HTTPGet.Path != "/health" {
				t.Errorf("%s: liveness on %s, want /health (a dependency outage must not restart the pod)", at, c.LivenessProbe.HTTPGet.Path)
			}
			grace := mustInt(t, at, env, "SHUTDOWN_GRACE_MS")
			wait := mustInt(t, at, env, "BATCH_RESULT_TIMEOUT_MS")
			pause := 0
			if ingressServices[svc] {
				if c.ReadinessProbe != nil && c.ReadinessProbe.HTTPGet != nil && c.ReadinessProbe.HTTPGet.Path != "/ready" {
					t.Errorf("%s: readiness on %s, want /ready", at, c.ReadinessProbe.HTTPGet.Path)
				}
				if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil || c.Lifecycle.PreStop.Sleep.Seconds < 2 {
					t.Errorf("%s: needs a preStop sleep of a few seconds, so endpoints drain before SIGTERM", at)
				} else {
					pause = int(c.Lifecycle.PreStop.Sleep.Seconds) * 1000
				}
			}
			tgp := 30_000
			if pod.Spec.TerminationGracePeriodSeconds != nil {
				tgp = int(*pod.Spec.TerminationGracePeriodSeconds) * 1000
			}
			if tgp <= pause+wait || tgp <= pause+grace {
				t.Errorf("%s: terminationGracePeriodSeconds %d ms must exceed the preStop pause (%d ms) plus BATCH_RESULT_TIMEOUT_MS (%d) and plus SHUTDOWN_GRACE_MS (%d)",
					at, tgp, pause, wait, grace)
			}
			if d.Spec.Strategy.RollingUpdate == nil || d.Spec.Strategy.RollingUpdate.MaxUnavailable == nil ||
				d.Spec.Strategy.RollingUpdate.MaxUnavailable.IntValue() != 0 {
				t.Errorf("%s: rolling updates should keep every pod until its successor is ready (maxUnavailable 0)", at)
			}
			if env["INSTANCE_ID"] != "(ref)" {
				t.Errorf("%s: INSTANCE_ID should be the pod's name (fieldRef metadata.name), got %q", at, env["INSTANCE_ID"])
			}
		}
	}
}

func mustInt(t *testing.T, at string, env map[string]string, key string) int {
	t.Helper()
	n, err := strconv.Atoi(env[key])
	if err != nil {
		t.Fatalf("%s: %s = %q: %v", at, key, env[key], err)
	}
	return n
}

// TestReferencesResolve: Services select pods and name their ports, PDBs
// select pods, HPAs scale Deployments that leave replicas to them, the
// fetcher scales on its backlog and the gateway on CPU.
func TestReferencesResolve(t *testing.T) {
	for _, ov := range overlays {
		o := render(t, ov)
		ws := o.Workloads()
		for name, s := range o.Services {
			pods := selecting(ws, s.Spec.Selector)
			if len(pods) == 0 {
				t.Errorf("%s: Service %s selects no pods", ov, name)
				continue
			}
			for _, p := range s.Spec.Ports {
				if p.TargetPort.Type == intstr.String && !namedPort(pods[0].Pod, p.TargetPort.StrVal) {
					t.Errorf("%s: Service %s targets port %q, which %s does not name", ov, name, p.TargetPort.StrVal, pods[0].Name)
				}
			}
		}
		for name, s := range o.StatefulSets {
			svc := o.Services[s.Spec.ServiceName]
			if svc == nil || len(selecting(ws, svc.Spec.Selector)) == 0 || selecting(ws, svc.Spec.Selector)[0].Name != name {
				t.Errorf("%s: StatefulSet %s: serviceName %q is not a Service selecting it", ov, name, s.Spec.ServiceName)
			}
		}
		for name, p := range o.PDBs {
			if p.Spec.Selector == nil || len(selecting(ws, p.Spec.Selector.MatchLabels)) == 0 {
				t.Errorf("%s: PodDisruptionBudget %s selects no pods", ov, name)
			}
		}
		for _, w := range ws {
			for i := range w.Pod.Spec.Containers {
				if _, err := effectiveEnv(o, &w.Pod.Spec.Containers[i]); err != nil {
					t.Errorf("%s: %s %s: %v", ov, w.Kind, w.Name, err)
				}
			}
			for _, v := range w.Pod.Spec.Volumes {
				if v.ConfigMap != nil && o.ConfigMaps[v.ConfigMap.Name] == nil {
					t.Errorf("%s: %s %s: volume %s names no ConfigMap %s", ov, w.Kind, w.Name, v.Name, v.ConfigMap.Name)
				}
			}
			if len(selecting(ws, w.Selector)) != 1 {
				t.Errorf("%s: %s %s: its selector matches other workloads' pods too", ov, w.Kind, w.Name)
			}
			if (w.Kind == "Deployment" || w.Name == "postgres") && !hasPDB(o, w) && o.HPAs[w.Name] == nil && (w.Replicas == nil || *w.Replicas > 1) {
				t.Errorf("%s: %s %s has no PodDisruptionBudget", ov, w.Kind, w.Name)
			}
		}
		for _, name := range []string{"gateway", "fetcher"} {
			h := o.HPAs[name]
			if h == nil {
				t.Errorf("%s: no HorizontalPodAutoscaler %s", ov, name)
				continue
			}
			if h.Spec.ScaleTargetRef.Kind != "Deployment" || o.Deployments[h.Spec.ScaleTargetRef.Name] == nil {
				t.Errorf("%s: HPA %s scales %v, not a Deployment here", ov, name, h.Spec.ScaleTargetRef)
			} else if o.Deployments[h.Spec.ScaleTargetRef.Name].Spec.Replicas != nil {
				t.Errorf("%s: Deployment %s sets replicas, which every kubectl apply would reset under its HPA", ov, name)
			}
			if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 2 {
				t.Errorf("%s: HPA %s should keep at least 2 pods", ov, name)
			}
			if !hasPDB(o, Workload{Selector: o.Deployments[name].Spec.Selector.MatchLabels}) {
				t.Errorf("%s: Deployment %s has no PodDisruptionBudget", ov, name)
			}
		}
		if h := o.HPAs["fetcher"]; h != nil {
			found := false
			for _, m := range h.Spec.Metrics {
				if m.External != nil && m.External.Metric.Name == "fetcher_stream_lag" && m.External.Target.AverageValue != nil {
					found = true
				}
			}
			if !found {
				t.Errorf("%s: the fetcher HPA must scale on the External metric fetcher_stream_lag with an AverageValue target", ov)
			}
		}
		if h := o.HPAs["gateway"]; h != nil && (len(h.Spec.Metrics) == 0 || h.Spec.Metrics[0].Resource == nil || h.Spec.Metrics[0].Resource.Name != corev1.ResourceCPU) {
			t.Errorf("%s: the gateway HPA should scale on CPU", ov)
		}
	}
}

func hasPDB(o *Objects, w Workload) bool {
	for _, p := range o.PDBs {
		if p.Spec.Selector != nil && subset(p.Spec.Selector.MatchLabels, w.Selector) {
			return true
		}
	}
	return false
}

func selecting(ws []Workload, sel map[string]string) []Workload {
	var out []Workload
	for _, w := range ws {
		if len(sel) > 0 && subset(sel, w.Pod.Labels) {
			out = append(out, w)
		}
	}
	return out
}

func subset(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func namedPort(pod *corev1.PodTemplateSpec, name string) bool {
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			if p.Name == name {
				return true
			}
		}
	}
	return false
}

// TestStoresAreWhereTheURLsPoint: REDIS_URL, DATABASE_URL and, with
// Sentinel, every REDIS_SENTINELS entry name a Service (or a StatefulSet
// pod behind its headless Service) and its port.
func TestStoresAreWhereTheURLsPoint(t *testing.T) {
	for _, ov := range overlays {
		o := render(t, ov)
		env, err := effectiveEnv(o, container(t, &o.Deployments["fetcher"].Spec.Template, "fetcher"))
		if err != nil {
			t.Fatal(err)
		}
		sentinels := env["REDIS_SENTINELS"]
		u, err := url.Parse(env["DATABASE_URL"])
		if err != nil {
			t.Fatal(err)
		}
		checkHostPort(t, o, ov+": DATABASE_URL", u.Host)
		if ov == "overlays/sentinel" {
			if sentinels == "" {
				t.Fatalf("%s: REDIS_SENTINELS is empty", ov)
			}
			hosts := strings.Split(sentinels, ",")
			sts := o.StatefulSets["redis-sentinel"]
			if sts == nil || sts.Spec.Replicas == nil || int(*sts.Spec.Replicas) != len(hosts) || len(hosts) < 3 {
				t.Errorf("%s: REDIS_SENTINELS names %d sentinels; want one per redis-sentinel pod, at least 3", ov, len(hosts))
			}
			for _, h := range hosts {
				checkHostPort(t, o, ov+": REDIS_SENTINELS", h)
			}
			if env["REDIS_MASTER_NAME"] == "" {
				t.Errorf("%s: REDIS_MASTER_NAME is empty", ov)
			}
			if o.StatefulSets["redis"] != nil || o.Services["redis"] != nil {
				t.Errorf("%s: the base's single Redis is still there", ov)
			}
			continue
		}
		if sentinels != "" {
			t.Errorf("%s: REDIS_SENTINELS = %q, want empty", ov, sentinels)
		}
		ru, err := url.Parse(env["REDIS_URL"])
		if err != nil {
			t.Fatal(err)
		}
		checkHostPort(t, o, ov+": REDIS_URL", ru.Host)
	}
}

// checkHostPort: host is "service:port" or "<statefulset>-<i>.<service>:port"
// with i below the replica count and service that StatefulSet's.
func checkHostPort(t *testing.T, o *Objects, at, hostport string) {
	t.Helper()
	host, port, ok := strings.Cut(hostport, ":")
	if !ok {
		port = "0"
	}
	svcName := host
	if pod, svc, ok := strings.Cut(host, "."); ok {
		svcName = svc
		i := strings.LastIndexByte(pod, '-')
		n, err := strconv.Atoi(pod[i+1:])
		sts := o.StatefulSets[pod[:max(i, 0)]]
		if i < 0 || err != nil || sts == nil || sts.Spec.ServiceName != svc || sts.Spec.Replicas == nil || int32(n) >= *sts.Spec.Replicas {
			t.Errorf("%s: %s is not a pod of a StatefulSet behind Service %s", at, host, svc)
		}
	}
	s := o.Services[svcName]
	if s == nil {
		t.Errorf("%s: %s names no Service (have %v)", at, hostport, sortedKeys(o.Services))
		return
	}
	for _, p := range s.Spec.Ports {
		if strconv.Itoa(int(p.Port)) == port {
			return
		}
	}
	t.Errorf("%s: Service %s has no port %s", at, svcName, port)
}

// TestConfigMapFollowsEnvExample: every setting of .env.example is in
// base/config.env, in secrets.env.example, or per pod (INSTANCE_ID), with
// .env.example's default, except the addresses of the cluster.
func TestConfigMapFollowsEnvExample(t *testing.T) {
	example := dotEnv(t, repoRoot+"/.env.example")
	cfg := dotEnv(t, "base/config.env")
	secrets := dotEnv(t, "base/secrets.env.example")
	if len(example) < 20 {
		t.Fatalf(".env.example: only %d settings found", len(example))
	}
	perCluster := map[string]bool{"REDIS_URL": true, "DATABASE_URL": true, "TRUSTED_PROXIES": true}
	for _, k := range sortedKeys(example) {
		v := example[k]
		if k == "INSTANCE_ID" {
			continue
		}
		if _, ok := secrets[k]; ok {
			if _, dup := cfg[k]; dup {
				t.Errorf("%s is in both config.env and secrets.env.example", k)
			}
			continue
		}
		got, ok := cfg[k]
		switch {
		case !ok:
			t.Errorf("%s (.env.example) is in neither base/config.env nor base/secrets.env.example", k)
		case got != v && !perCluster[k]:
			t.Errorf("base/config.env: %s=%s, but .env.example's default is %q", k, got, v)
		}
	}
	for _, k := range []string{"JWT_SECRET", "ADMIN_PASS", "COINGECKO_API_KEY"} {
		if _, ok := secrets[k]; !ok {
			t.Errorf("%s belongs in base/secrets.env.example", k)
		}
	}
}

// TestSentinelScriptsParse: the start scripts of the sentinel overlay are
// valid sh (they run in redis:7-alpine's busybox sh).
func TestSentinelScriptsParse(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Fatal("no sh on PATH")
	}
	for _, f := range []string{"overlays/sentinel/redis-node.sh", "overlays/sentinel/redis-sentinel.sh"} {
		if out, err := exec.Command(sh, "-n", f).CombinedOutput(); err != nil {
			t.Errorf("sh -n %s: %v\n%s", f, err, out)
		}
	}
}
