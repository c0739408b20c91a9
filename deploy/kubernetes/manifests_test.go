package kubernetes_test

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/tidingshq/tidings/pkg/config"
	"github.com/tidingshq/tidings/pkg/grpcserver"
)

// overlays are the installations the manifests describe.
var overlays = []struct {
	name string
	// externalSecrets are Secrets the overlay expects the operator to have
	// created; every other Secret a pod uses must be in the render.
	externalSecrets []string
	streamReplicas  string
}{
	{name: "dev", streamReplicas: "1"},
	{name: "production", externalSecrets: []string{"tidings-auth"}, streamReplicas: "3"},
}

// rendered is an overlay's objects, decoded strictly into their API types.
type rendered struct {
	deployments []*appsv1.Deployment
	services    []*corev1.Service
	configMaps  []*corev1.ConfigMap
	secrets     []*corev1.Secret
	accounts    []*corev1.ServiceAccount
	hpas        []*autoscalingv2.HorizontalPodAutoscaler
	pdbs        []*policyv1.PodDisruptionBudget
	policies    []*networkingv1.NetworkPolicy
	namespaces  map[string]bool
}

func render(t *testing.T, overlay string) *rendered {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), filepath.Join("overlays", overlay))
	require.NoError(t, err, "kustomize build overlays/%s", overlay)

	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, appsv1.AddToScheme, autoscalingv2.AddToScheme, policyv1.AddToScheme, networkingv1.AddToScheme,
	} {
		require.NoError(t, add(scheme))
	}
	// Strict: a field the API type does not have, or a field given twice,
	// is an error, as the API server's strict field validation makes it.
	codec := kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, scheme, scheme, kjson.SerializerOptions{Yaml: true, Strict: true})

	r := &rendered{namespaces: map[string]bool{}}
	require.NotEmpty(t, m.Resources())
	for _, res := range m.Resources() {
		y, err := res.AsYAML()
		require.NoError(t, err)
		obj, gvk, err := codec.Decode(y, nil, nil)
		require.NoError(t, err, "%s/%s does not decode strictly:\n%s", res.GetKind(), res.GetName(), y)
		meta, ok := obj.(metav1.Object)
		require.True(t, ok)
		require.NotEmpty(t, meta.GetName(), "%s has no name", gvk)
		r.namespaces[meta.GetNamespace()] = true
		require.Equal(t, "tidings", meta.GetLabels()["app.kubernetes.io/part-of"], "%s/%s lacks the part-of label", gvk.Kind, meta.GetName())
		switch o := obj.(type) {
		case *appsv1.Deployment:
			r.deployments = append(r.deployments, o)
		case *corev1.Service:
			r.services = append(r.services, o)
		case *corev1.ConfigMap:
			r.configMaps = append(r.configMaps, o)
		case *corev1.Secret:
			r.secrets = append(r.secrets, o)
		case *corev1.ServiceAccount:
			r.accounts = append(r.accounts, o)
		case *autoscalingv2.HorizontalPodAutoscaler:
			r.hpas = append(r.hpas, o)
		case *policyv1.PodDisruptionBudget:
			r.pdbs = append(r.pdbs, o)
		case *networkingv1.NetworkPolicy:
			r.policies = append(r.policies, o)
		default:
			t.Fatalf("%s/%s: no check for kind %s", gvk.Kind, meta.GetName(), gvk)
		}
	}
	return r
}

func (r *rendered) deployment(name string) *appsv1.Deployment {
	for _, d := range r.deployments {
		if d.Name == name {
			return d
		}
	}
	return nil
}

// selecting returns the deployments whose pods a selector picks.
func (r *rendered) selecting(t *testing.T, sel labels.Selector) []*appsv1.Deployment {
	t.Helper()
	var out []*appsv1.Deployment
	for _, d := range r.deployments {
		if sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			out = append(out, d)
		}
	}
	return out
}

func selector(t *testing.T, ls *metav1.LabelSelector) labels.Selector {
	t.Helper()
	require.NotNil(t, ls, "no selector")
	sel, err := metav1.LabelSelectorAsSelector(ls)
	require.NoError(t, err)
	require.False(t, sel.Empty(), "an empty selector picks every pod")
	return sel
}

func TestOverlays(t *testing.T) {
	for _, ov := range overlays {
		t.Run(ov.name, func(t *testing.T) {
			r := render(t, ov.name)
			require.Len(t, r.namespaces, 1, "every object in one namespace")
			require.False(t, r.namespaces[""], "every object has the overlay's namespace")

			api, worker := r.deployment("tidings-api"), r.deployment("tidings-worker")
			require.NotNil(t, api, "an API Deployment")
			require.NotNil(t, worker, "a worker Deployment")
			require.Len(t, r.deployments, 2)
			for _, d := range r.deployments {
				checkDeployment(t, r, d, ov.externalSecrets)
			}
			checkAPIProbes(t, api)
			checkWorkerProbes(t, worker)
			require.Equal(t, []string{"serve", "api"}, api.Spec.Template.Spec.Containers[0].Args)
			require.Equal(t, []string{"worker"}, worker.Spec.Template.Spec.Containers[0].Args)

			checkServices(t, r)
			checkAPIService(t, r, api)
			for _, d := range r.deployments {
				checkMetrics(t, r, d)
			}
			checkHPAs(t, r, api)
			checkPDBs(t, r)
			checkNetworkPolicies(t, r)
			checkConfig(t, r, ov.streamReplicas)
			checkSecrets(t, r, ov.name, ov.externalSecrets)
		})
	}
}

func checkDeployment(t *testing.T, r *rendered, d *appsv1.Deployment, externalSecrets []string) {
	t.Helper()
	sel := selector(t, d.Spec.Selector)
	require.True(t, sel.Matches(labels.Set(d.Spec.Template.Labels)), "%s: the selector does not match the pod labels", d.Name)
	require.Len(t, r.selecting(t, sel), 1, "%s: the selector picks another Deployment's pods too", d.Name)
	require.NotNil(t, d.Spec.Replicas)
	require.GreaterOrEqual(t, *d.Spec.Replicas, int32(1))

	pod := d.Spec.Template.Spec
	require.NotNil(t, pod.SecurityContext)
	require.NotNil(t, pod.SecurityContext.RunAsNonRoot)
	require.True(t, *pod.SecurityContext.RunAsNonRoot, "%s runs as root", d.Name)
	require.NotNil(t, pod.SecurityContext.RunAsUser)
	require.NotZero(t, *pod.SecurityContext.RunAsUser)
	require.NotNil(t, pod.AutomountServiceAccountToken)
	require.False(t, *pod.AutomountServiceAccountToken)
	require.True(t, slices.ContainsFunc(r.accounts, func(a *corev1.ServiceAccount) bool { return a.Name == pod.ServiceAccountName }),
		"%s: service account %q is not in the render", d.Name, pod.ServiceAccountName)

	require.Len(t, pod.Containers, 1)
	c := pod.Containers[0]
	require.NotEmpty(t, c.Image, "%s: no image", d.Name)
	name, tagOrDigest, ok := strings.Cut(c.Image, ":")
	if at := strings.Index(c.Image, "@sha256:"); at > 0 {
		name, tagOrDigest, ok = c.Image[:at], c.Image[at+1:], true
	}
	require.True(t, ok && name != "" && tagOrDigest != "" && tagOrDigest != "latest", "%s: image %q must name a tag or digest, not latest", d.Name, c.Image)
	require.NotNil(t, c.ReadinessProbe, "%s: no readiness probe", d.Name)
	require.NotNil(t, c.LivenessProbe, "%s: no liveness probe", d.Name)
	require.NotNil(t, c.StartupProbe, "%s: no startup probe", d.Name)
	for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, hasReq := c.Resources.Requests[res]
		lim, hasLim := c.Resources.Limits[res]
		require.True(t, hasReq && hasLim, "%s: %s needs a request and a limit", d.Name, res)
		require.LessOrEqual(t, req.Cmp(lim), 0, "%s: %s request above its limit", d.Name, res)
	}
	sc := c.SecurityContext
	require.NotNil(t, sc)
	require.True(t, sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem, "%s: writable root file system", d.Name)
	require.True(t, sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation, "%s: privilege escalation allowed", d.Name)
	require.NotNil(t, sc.Capabilities)
	require.Equal(t, []corev1.Capability{"ALL"}, sc.Capabilities.Drop)

	// Every ConfigMap and Secret the pod uses is in the render, or is one
	// the overlay says the operator creates.
	for _, ef := range c.EnvFrom {
		require.NotNil(t, ef.ConfigMapRef, "%s: only ConfigMaps in envFrom", d.Name)
		require.True(t, slices.ContainsFunc(r.configMaps, func(cm *corev1.ConfigMap) bool { return cm.Name == ef.ConfigMapRef.Name }),
			"%s: ConfigMap %q is not in the render", d.Name, ef.ConfigMapRef.Name)
	}
	mounts := map[string]bool{}
	for _, m := range c.VolumeMounts {
		mounts[m.Name] = true
	}
	for _, v := range pod.Volumes {
		require.True(t, mounts[v.Name], "%s: volume %s is not mounted", d.Name, v.Name)
		if v.Secret != nil {
			inRender := slices.ContainsFunc(r.secrets, func(s *corev1.Secret) bool { return s.Name == v.Secret.SecretName })
			require.True(t, inRender || slices.Contains(externalSecrets, v.Secret.SecretName),
				"%s: Secret %q is neither in the render nor one the operator creates", d.Name, v.Secret.SecretName)
		}
	}
}

func containerPort(c corev1.Container, name string) (int32, bool) {
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort, true
		}
	}
	return 0, false
}

func checkAPIProbes(t *testing.T, d *appsv1.Deployment) {
	t.Helper()
	c := d.Spec.Template.Spec.Containers[0]
	grpcPort, ok := containerPort(c, "grpc")
	require.True(t, ok, "the API container has no grpc port")
	ready := c.ReadinessProbe.GRPC
	require.NotNil(t, ready, "the API's readiness probe is gRPC health")
	require.Equal(t, grpcPort, ready.Port)
	require.True(t, ready.Service == nil || *ready.Service == "", "readiness asks for the overall status")
	for name, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "startup": c.StartupProbe} {
		require.NotNil(t, p.GRPC, "the API's %s probe is gRPC health", name)
		require.Equal(t, grpcPort, p.GRPC.Port)
		require.NotNil(t, p.GRPC.Service)
		require.Equal(t, grpcserver.LivenessService, *p.GRPC.Service, "%s asks for the health service that does not follow the dependencies", name)
	}
}

func checkWorkerProbes(t *testing.T, d *appsv1.Deployment) {
	t.Helper()
	c := d.Spec.Template.Spec.Containers[0]
	_, ok := containerPort(c, "http")
	require.True(t, ok, "the worker container has no http port")
	for _, tc := range []struct {
		probe *corev1.Probe
		path  string
	}{{c.ReadinessProbe, "/healthz"}, {c.LivenessProbe, "/livez"}, {c.StartupProbe, "/livez"}} {
		require.NotNil(t, tc.probe.HTTPGet)
		require.Equal(t, tc.path, tc.probe.HTTPGet.Path)
		require.Equal(t, intstr.FromString("http"), tc.probe.HTTPGet.Port)
	}
}

func checkServices(t *testing.T, r *rendered) {
	t.Helper()
	require.NotEmpty(t, r.services)
	for _, s := range r.services {
		ds := r.selecting(t, labels.SelectorFromSet(s.Spec.Selector))
		require.Len(t, ds, 1, "Service %s selects no Deployment's pods, or several", s.Name)
		require.NotEmpty(t, s.Spec.Selector)
		for _, p := range s.Spec.Ports {
			require.Equal(t, intstr.String, p.TargetPort.Type, "Service %s: target ports by name", s.Name)
			_, ok := containerPort(ds[0].Spec.Template.Spec.Containers[0], p.TargetPort.StrVal)
			require.True(t, ok, "Service %s: no container port %q in %s", s.Name, p.TargetPort.StrVal, ds[0].Name)
		}
	}
}

// checkAPIService: the API's Service carries both doors of the API, gRPC
// and the HTTP/JSON API, each to the container port of that name.
func checkAPIService(t *testing.T, r *rendered, api *appsv1.Deployment) {
	t.Helper()
	var svc *corev1.Service
	for _, s := range r.services {
		if s.Name == "tidings-api" {
			svc = s
		}
	}
	require.NotNil(t, svc, "a tidings-api Service")
	require.True(t, labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(api.Spec.Template.Labels)), "tidings-api selects the API pods")
	for _, name := range []string{"grpc", "http"} {
		i := slices.IndexFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == name })
		require.GreaterOrEqual(t, i, 0, "the tidings-api Service has no %s port", name)
		p := svc.Spec.Ports[i]
		require.Equal(t, intstr.FromString(name), p.TargetPort)
		cp, ok := containerPort(api.Spec.Template.Spec.Containers[0], name)
		require.True(t, ok)
		require.Equal(t, cp, p.Port, "tidings-api: the %s port is the container's", name)
		require.NotNil(t, p.AppProtocol, "tidings-api: the %s port names its protocol", name)
		require.Equal(t, name, *p.AppProtocol)
	}
	for _, p := range svc.Spec.Ports {
		require.NotEqual(t, "metrics", p.TargetPort.StrVal, "tidings-api: the debug port (pprof) is no Service's")
	}
}

// checkMetrics: every container declares its debug listener as the port
// "metrics", where TIDINGS_DEBUG_ADDR listens on the pod's addresses; the
// pod asks Prometheus to scrape it; and only the monitoring namespace may
// reach it (it also serves /debug/pprof).
func checkMetrics(t *testing.T, r *rendered, d *appsv1.Deployment) {
	t.Helper()
	c := d.Spec.Template.Spec.Containers[0]
	port, ok := containerPort(c, "metrics")
	require.True(t, ok, "%s: the container declares no metrics port", d.Name)

	require.Len(t, r.configMaps, 1)
	host, p, err := net.SplitHostPort(r.configMaps[0].Data["TIDINGS_DEBUG_ADDR"])
	require.NoError(t, err, "TIDINGS_DEBUG_ADDR")
	require.Equal(t, fmt.Sprint(port), p, "%s: the metrics port is where TIDINGS_DEBUG_ADDR listens", d.Name)
	ip := net.ParseIP(host)
	require.True(t, host == "" || (ip != nil && ip.IsUnspecified()), "%s: TIDINGS_DEBUG_ADDR %s cannot be scraped from outside the pod", d.Name, host)

	ann := d.Spec.Template.Annotations
	require.Equal(t, "true", ann["prometheus.io/scrape"], "%s: the pods ask to be scraped", d.Name)
	require.Equal(t, fmt.Sprint(port), ann["prometheus.io/port"], "%s: scraped on the metrics port", d.Name)
	require.Equal(t, "/metrics", ann["prometheus.io/path"], "%s: scraped at /metrics", d.Name)

	var policy *networkingv1.NetworkPolicy
	for _, np := range r.policies {
		if selector(t, &np.Spec.PodSelector).Matches(labels.Set(d.Spec.Template.Labels)) {
			policy = np
		}
	}
	require.NotNil(t, policy, "no NetworkPolicy for %s", d.Name)
	require.True(t, allowsIngress(policy, port), "NetworkPolicy %s: Prometheus cannot reach %s's metrics port", policy.Name, d.Name)
	for _, rule := range policy.Spec.Ingress {
		if !slices.ContainsFunc(rule.Ports, func(rp networkingv1.NetworkPolicyPort) bool { return rp.Port != nil && rp.Port.IntValue() == int(port) }) {
			continue
		}
		require.NotEmpty(t, rule.From, "NetworkPolicy %s opens the metrics port (and pprof) to everyone", policy.Name)
		for _, peer := range rule.From {
			require.Nil(t, peer.IPBlock, "NetworkPolicy %s: the metrics port from an IP block", policy.Name)
			require.NotNil(t, peer.NamespaceSelector, "NetworkPolicy %s: the metrics port from a namespace", policy.Name)
			require.Equal(t, map[string]string{"kubernetes.io/metadata.name": "monitoring"}, peer.NamespaceSelector.MatchLabels,
				"NetworkPolicy %s: the metrics port from the monitoring namespace only", policy.Name)
		}
	}
}

func checkHPAs(t *testing.T, r *rendered, api *appsv1.Deployment) {
	t.Helper()
	require.Len(t, r.hpas, 1)
	h := r.hpas[0]
	require.Equal(t, "Deployment", h.Spec.ScaleTargetRef.Kind)
	require.Equal(t, api.Name, h.Spec.ScaleTargetRef.Name)
	require.NotNil(t, h.Spec.MinReplicas)
	require.GreaterOrEqual(t, *h.Spec.MinReplicas, int32(1))
	require.LessOrEqual(t, *h.Spec.MinReplicas, h.Spec.MaxReplicas)
	require.LessOrEqual(t, *h.Spec.MinReplicas, *api.Spec.Replicas, "the Deployment starts within the HPA's range")
	require.GreaterOrEqual(t, h.Spec.MaxReplicas, *api.Spec.Replicas)
	for _, m := range h.Spec.Metrics {
		if m.Resource != nil && m.Resource.Target.Type == autoscalingv2.UtilizationMetricType {
			_, ok := api.Spec.Template.Spec.Containers[0].Resources.Requests[m.Resource.Name]
			require.True(t, ok, "utilization of %s needs a request of it", m.Resource.Name)
		}
	}
}

func checkPDBs(t *testing.T, r *rendered) {
	t.Helper()
	covered := map[string]bool{}
	for _, p := range r.pdbs {
		ds := r.selecting(t, selector(t, p.Spec.Selector))
		require.Len(t, ds, 1, "PodDisruptionBudget %s selects one Deployment's pods", p.Name)
		covered[ds[0].Name] = true
		require.True(t, p.Spec.MaxUnavailable != nil || p.Spec.MinAvailable != nil)
		if p.Spec.MinAvailable != nil {
			require.Less(t, p.Spec.MinAvailable.IntValue(), int(*ds[0].Spec.Replicas), "%s would block every drain", p.Name)
		}
	}
	for _, d := range r.deployments {
		require.True(t, covered[d.Name], "no PodDisruptionBudget for %s", d.Name)
	}
}

func checkNetworkPolicies(t *testing.T, r *rendered) {
	t.Helper()
	covered := map[string]*networkingv1.NetworkPolicy{}
	for _, p := range r.policies {
		ds := r.selecting(t, selector(t, &p.Spec.PodSelector))
		require.Len(t, ds, 1, "NetworkPolicy %s selects one Deployment's pods", p.Name)
		require.ElementsMatch(t, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}, p.Spec.PolicyTypes)
		covered[ds[0].Name] = p
	}
	for _, d := range r.deployments {
		p := covered[d.Name]
		require.NotNil(t, p, "no NetworkPolicy for %s", d.Name)
		// Every port a Service sends to is let in.
		for _, s := range r.services {
			if len(r.selecting(t, labels.SelectorFromSet(s.Spec.Selector))) == 0 || !labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
				continue
			}
			for _, sp := range s.Spec.Ports {
				port, _ := containerPort(d.Spec.Template.Spec.Containers[0], sp.TargetPort.StrVal)
				require.True(t, allowsIngress(p, port), "NetworkPolicy %s does not let Service %s reach port %d", p.Name, s.Name, port)
			}
		}
		// Egress reaches NATS and Redis.
		for _, port := range []int{4222, 6379, 53} {
			require.True(t, allowsEgress(p, port), "NetworkPolicy %s blocks egress to port %d", p.Name, port)
		}
	}
}

func allowsIngress(p *networkingv1.NetworkPolicy, port int32) bool {
	for _, rule := range p.Spec.Ingress {
		for _, rp := range rule.Ports {
			if rp.Port != nil && rp.Port.IntValue() == int(port) {
				return true
			}
		}
	}
	return false
}

func allowsEgress(p *networkingv1.NetworkPolicy, port int) bool {
	for _, rule := range p.Spec.Egress {
		for _, rp := range rule.Ports {
			if rp.Port != nil && rp.Port.IntValue() == port {
				return true
			}
		}
	}
	return false
}

// checkConfig sets every TIDINGS_* setting of the ConfigMap on the real
// flags of `tidings serve`, and validates the configuration as a process
// would before it opens any connection.
func checkConfig(t *testing.T, r *rendered, streamReplicas string) {
	t.Helper()
	require.Len(t, r.configMaps, 1)
	data := r.configMaps[0].Data
	cfg := config.Default()
	fs := pflag.NewFlagSet("tidings", pflag.ContinueOnError)
	cfg.BindFlags(fs)
	byEnv := map[string]string{}
	fs.VisitAll(func(f *pflag.Flag) { byEnv[config.EnvName(f.Name)] = f.Name })
	for k, v := range data {
		flag, ok := byEnv[k]
		require.True(t, ok, "%s is no setting of tidings (a typo is silently ignored)", k)
		require.NoError(t, fs.Set(flag, v), "%s=%q", k, v)
	}
	for _, k := range []string{"TIDINGS_NATS_URL", "TIDINGS_REDIS_ADDR", "TIDINGS_STREAM_REPLICAS", "TIDINGS_GRPC_ADDR", "TIDINGS_HTTP_ADDR", "TIDINGS_DEBUG_ADDR", "TIDINGS_AUTH_SECRET_FILE"} {
		require.Contains(t, data, k)
	}
	require.Equal(t, streamReplicas, data["TIDINGS_STREAM_REPLICAS"])
	// The secret itself comes from the mounted file; any 32 bytes stand in.
	cfg.AuthSecret = strings.Repeat("x", 32)
	require.NoError(t, cfg.Validate())

	for _, d := range r.deployments {
		c := d.Spec.Template.Spec.Containers[0]
		mounted := slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool {
			return filepath.Dir(data["TIDINGS_AUTH_SECRET_FILE"]) == m.MountPath
		})
		require.True(t, mounted, "%s: nothing mounted where TIDINGS_AUTH_SECRET_FILE points", d.Name)
		_, port, _ := strings.Cut(data["TIDINGS_HTTP_ADDR"], ":")
		httpPort, _ := containerPort(c, "http")
		require.Equal(t, port, fmt.Sprint(httpPort), "%s: the HTTP port is where TIDINGS_HTTP_ADDR listens", d.Name)
		if gp, ok := containerPort(c, "grpc"); ok {
			_, port, _ := strings.Cut(data["TIDINGS_GRPC_ADDR"], ":")
			require.Equal(t, port, fmt.Sprint(gp), "%s: the gRPC port is where TIDINGS_GRPC_ADDR listens", d.Name)
		}
	}
}

func checkSecrets(t *testing.T, r *rendered, overlay string, external []string) {
	t.Helper()
	if len(external) > 0 {
		require.Empty(t, r.secrets, "%s: no key is kept in the repository", overlay)
		return
	}
	require.Len(t, r.secrets, 1)
	key := r.secrets[0].Data["auth.secret"]
	require.GreaterOrEqual(t, len(strings.TrimSpace(string(key))), 32, "the signing key is at least 32 bytes")
	require.Contains(t, string(key), "EXAMPLE", "the example key says it is one")
}

func TestNoOverlayIsMissed(t *testing.T) {
	entries, err := os.ReadDir("overlays")
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	var tested []string
	for _, ov := range overlays {
		tested = append(tested, ov.name)
	}
	require.ElementsMatch(t, names, tested, "every overlay is rendered and checked")
}
