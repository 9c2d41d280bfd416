package k8s

import (
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"maps"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"gopkg.in/yaml.v3"

	"github.com/dynamo-kv/dynamo/node"
)

// The few fields of each kind that the checks read; everything else in a
// manifest is ignored.

type objectMeta struct {
	Name   string            `yaml:"name"`
	Labels map[string]string `yaml:"labels"`
}

type header struct {
	APIVersion string     `yaml:"apiVersion"`
	Kind       string     `yaml:"kind"`
	Metadata   objectMeta `yaml:"metadata"`
}

type labelSelector struct {
	MatchLabels      map[string]string `yaml:"matchLabels"`
	MatchExpressions []yaml.Node       `yaml:"matchExpressions"`
}

// intOrString is a port or a budget: a number or a name.
type intOrString struct {
	Int int
	Str string
}

func (v *intOrString) UnmarshalYAML(n *yaml.Node) error {
	if n.Tag == "!!int" {
		return n.Decode(&v.Int)
	}
	return n.Decode(&v.Str)
}

func (v intOrString) String() string {
	if v.Str != "" {
		return strconv.Quote(v.Str)
	}
	return strconv.Itoa(v.Int)
}

type statefulSet struct {
	Metadata objectMeta `yaml:"metadata"`
	Spec     struct {
		ServiceName         string        `yaml:"serviceName"`
		Replicas            *int          `yaml:"replicas"`
		PodManagementPolicy string        `yaml:"podManagementPolicy"`
		MinReadySeconds     int           `yaml:"minReadySeconds"`
		Selector            labelSelector `yaml:"selector"`
		Template            struct {
			Metadata objectMeta `yaml:"metadata"`
			Spec     podSpec    `yaml:"spec"`
		} `yaml:"template"`
		VolumeClaimTemplates []struct {
			Metadata objectMeta `yaml:"metadata"`
			Spec     struct {
				AccessModes []string `yaml:"accessModes"`
				Resources   struct {
					Requests map[string]string `yaml:"requests"`
				} `yaml:"resources"`
			} `yaml:"spec"`
		} `yaml:"volumeClaimTemplates"`
	} `yaml:"spec"`
}

type podSpec struct {
	EnableServiceLinks            *bool `yaml:"enableServiceLinks"`
	TerminationGracePeriodSeconds *int  `yaml:"terminationGracePeriodSeconds"`
	SecurityContext               struct {
		RunAsNonRoot *bool  `yaml:"runAsNonRoot"`
		RunAsUser    *int64 `yaml:"runAsUser"`
		FSGroup      *int64 `yaml:"fsGroup"`
	} `yaml:"securityContext"`
	Containers []container `yaml:"containers"`
}

type container struct {
	Name           string          `yaml:"name"`
	Env            []envVar        `yaml:"env"`
	Ports          []containerPort `yaml:"ports"`
	StartupProbe   *probe          `yaml:"startupProbe"`
	LivenessProbe  *probe          `yaml:"livenessProbe"`
	ReadinessProbe *probe          `yaml:"readinessProbe"`
	Lifecycle      struct {
		PreStop *struct {
			Sleep *struct {
				Seconds int `yaml:"seconds"`
			} `yaml:"sleep"`
		} `yaml:"preStop"`
	} `yaml:"lifecycle"`
	Resources struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	SecurityContext struct {
		ReadOnlyRootFilesystem   *bool `yaml:"readOnlyRootFilesystem"`
		AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
	} `yaml:"securityContext"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		ReadOnly  bool   `yaml:"readOnly"`
	} `yaml:"volumeMounts"`
}

type envVar struct {
	Name string `yaml:"name"`
	// Value stays a node so that its YAML type can be checked: the API
	// server rejects a bare 8080 or true where a string belongs.
	Value     yaml.Node `yaml:"value"`
	ValueFrom *struct {
		FieldRef *struct {
			FieldPath string `yaml:"fieldPath"`
		} `yaml:"fieldRef"`
	} `yaml:"valueFrom"`
}

type containerPort struct {
	Name          string `yaml:"name"`
	ContainerPort int    `yaml:"containerPort"`
	Protocol      string `yaml:"protocol"`
}

type probe struct {
	HTTPGet *struct {
		Path   string      `yaml:"path"`
		Port   intOrString `yaml:"port"`
		Scheme string      `yaml:"scheme"`
	} `yaml:"httpGet"`
}

type service struct {
	Metadata objectMeta `yaml:"metadata"`
	Spec     struct {
		ClusterIP                string            `yaml:"clusterIP"`
		PublishNotReadyAddresses bool              `yaml:"publishNotReadyAddresses"`
		Selector                 map[string]string `yaml:"selector"`
		Ports                    []struct {
			Name       string      `yaml:"name"`
			Port       int         `yaml:"port"`
			TargetPort intOrString `yaml:"targetPort"`
			Protocol   string      `yaml:"protocol"`
		} `yaml:"ports"`
	} `yaml:"spec"`
}

type podDisruptionBudget struct {
	Metadata objectMeta `yaml:"metadata"`
	Spec     struct {
		MaxUnavailable *intOrString  `yaml:"maxUnavailable"`
		MinAvailable   *intOrString  `yaml:"minAvailable"`
		Selector       labelSelector `yaml:"selector"`
	} `yaml:"spec"`
}

// deployment is everything the directory declares.
type deployment struct {
	resources []string // the kustomization's
	files     []string // the manifests beside it
	sts       statefulSet
	services  []service
	pdbs      []podDisruptionBudget
}

// load decodes every manifest in the directory; each kind it does not know
// fails the test, so a new kind comes with its checks.
func load(t *testing.T) *deployment {
	t.Helper()
	d := &deployment{}
	var kustomization struct {
		Resources []string `yaml:"resources"`
	}
	b, err := os.ReadFile("kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &kustomization); err != nil {
		t.Fatalf("kustomization.yaml: %v", err)
	}
	d.resources = kustomization.Resources
	paths, err := filepath.Glob("*.y*ml")
	if err != nil {
		t.Fatal(err)
	}
	var statefulSets []statefulSet
	for _, path := range paths {
		if path == "kustomization.yaml" || path == "kustomization.yml" {
			continue
		}
		d.files = append(d.files, path)
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(f)
		for i := 0; ; i++ {
			var doc yaml.Node
			err := dec.Decode(&doc)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s, document %d: %v", path, i, err)
			}
			if len(doc.Content) == 0 {
				continue // only comments
			}
			var h header
			decode := func(v any) {
				t.Helper()
				if err := doc.Decode(v); err != nil {
					t.Fatalf("%s, document %d (%s %s): %v", path, i, h.Kind, h.Metadata.Name, err)
				}
			}
			decode(&h)
			if h.APIVersion == "" || h.Kind == "" || h.Metadata.Name == "" {
				t.Fatalf("%s, document %d: apiVersion, kind and metadata.name are required, got %+v", path, i, h)
			}
			switch h.Kind {
			case "StatefulSet":
				var s statefulSet
				decode(&s)
				statefulSets = append(statefulSets, s)
			case "Service":
				var s service
				decode(&s)
				d.services = append(d.services, s)
			case "PodDisruptionBudget":
				var p podDisruptionBudget
				decode(&p)
				d.pdbs = append(d.pdbs, p)
			default:
				t.Fatalf("%s: kind %s has no checks here; add them", path, h.Kind)
			}
		}
		f.Close()
	}
	if len(statefulSets) != 1 {
		t.Fatalf("want one StatefulSet, found %d", len(statefulSets))
	}
	d.sts = statefulSets[0]
	if d.sts.Spec.Replicas == nil {
		t.Fatalf("StatefulSet %s: replicas must be set (it defaults to 1)", d.sts.Metadata.Name)
	}
	if n := len(d.sts.Spec.Template.Spec.Containers); n != 1 {
		t.Fatalf("StatefulSet %s: want one container, found %d", d.sts.Metadata.Name, n)
	}
	return d
}

func (d *deployment) container() container { return d.sts.Spec.Template.Spec.Containers[0] }

func (d *deployment) podLabels() map[string]string { return d.sts.Spec.Template.Metadata.Labels }

// headless returns the Service the StatefulSet names.
func (d *deployment) headless(t *testing.T) service {
	t.Helper()
	for _, s := range d.services {
		if s.Metadata.Name == d.sts.Spec.ServiceName {
			return s
		}
	}
	t.Fatalf("StatefulSet serviceName %q names no Service here", d.sts.Spec.ServiceName)
	return service{}
}

// env returns the value of a variable the container sets literally.
func (d *deployment) env(name string) (string, bool) {
	for _, e := range d.container().Env {
		if e.Name == name && e.ValueFrom == nil {
			return e.Value.Value, true
		}
	}
	return "", false
}

// expanded returns a variable's value with each $(VAR) that Kubernetes
// would expand replaced: by the variable's value, or by {fieldPath} for
// one taken from the downward API. A variable itself from the downward API
// is {fieldPath}.
func (d *deployment) expanded(name string) (string, bool) {
	vals := map[string]string{}
	for _, e := range d.container().Env {
		var v string
		switch {
		case e.ValueFrom != nil && e.ValueFrom.FieldRef != nil:
			v = "{" + e.ValueFrom.FieldRef.FieldPath + "}"
		case e.ValueFrom != nil:
			v = "{?}"
		default:
			v = envRef.ReplaceAllStringFunc(e.Value.Value, func(ref string) string {
				if x, ok := vals[ref[2:len(ref)-1]]; ok {
					return x
				}
				return ref
			})
		}
		vals[e.Name] = v
	}
	v, ok := vals[name]
	return v, ok
}

// envRef matches a $(VAR) reference in an env value.
var envRef = regexp.MustCompile(`\$\([A-Za-z_][A-Za-z0-9_]*\)`)

// listenPort returns the port of a DYNAMO_*_LISTEN variable, which must
// bind every address so that other pods reach it.
func (d *deployment) listenPort(t *testing.T, name string) int {
	t.Helper()
	v, ok := d.env(name)
	if !ok {
		t.Fatalf("%s is not set: the binary's default binds loopback only", name)
	}
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, v, err)
	}
	if host != "" && host != "0.0.0.0" && host != "::" {
		t.Errorf("%s=%q binds %s; other pods and probes need every address (0.0.0.0)", name, v, host)
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		t.Fatalf("%s=%q: port: %v", name, v, err)
	}
	return p
}

// containerPort resolves a Service target port or a probe port (a number
// or a port name) to the container port it reaches.
func (d *deployment) containerPort(p intOrString, protocol string) (containerPort, bool) {
	if protocol == "" {
		protocol = "TCP"
	}
	for _, cp := range d.container().Ports {
		proto := cp.Protocol
		if proto == "" {
			proto = "TCP"
		}
		if proto == protocol && ((p.Str != "" && cp.Name == p.Str) || (p.Str == "" && cp.ContainerPort == p.Int)) {
			return cp, true
		}
	}
	return containerPort{}, false
}

func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false // an empty selector selects everything, or nothing: never meant here
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func TestKustomizationListsEveryManifest(t *testing.T) {
	d := load(t)
	listed := slices.Sorted(slices.Values(d.resources))
	if !slices.Equal(listed, d.files) {
		t.Errorf("kustomization.yaml resources %v, manifests in the directory %v: apply -k would skip or miss some", listed, d.files)
	}
}

func TestSelectorsMatchPodLabels(t *testing.T) {
	d := load(t)
	labels := d.podLabels()
	sel := d.sts.Spec.Selector
	if len(sel.MatchExpressions) > 0 {
		t.Errorf("StatefulSet selector uses matchExpressions, which this test does not evaluate")
	}
	if !selects(sel.MatchLabels, labels) {
		t.Errorf("StatefulSet selector %v does not match its pod labels %v", sel.MatchLabels, labels)
	}
	for _, s := range d.services {
		if !selects(s.Spec.Selector, labels) {
			t.Errorf("Service %s selector %v does not match the pod labels %v", s.Metadata.Name, s.Spec.Selector, labels)
		}
	}
	for _, p := range d.pdbs {
		if len(p.Spec.Selector.MatchExpressions) > 0 {
			t.Errorf("PodDisruptionBudget %s uses matchExpressions, which this test does not evaluate", p.Metadata.Name)
		}
		if !selects(p.Spec.Selector.MatchLabels, labels) {
			t.Errorf("PodDisruptionBudget %s selector %v does not match the pod labels %v", p.Metadata.Name, p.Spec.Selector.MatchLabels, labels)
		}
	}
}

func TestHeadlessServiceGivesPodsStableNames(t *testing.T) {
	d := load(t)
	h := d.headless(t)
	if h.Spec.ClusterIP != "None" {
		t.Errorf("Service %s: clusterIP %q, want None: pods get DNS names only from a headless Service", h.Metadata.Name, h.Spec.ClusterIP)
	}
	if !h.Spec.PublishNotReadyAddresses {
		t.Errorf("Service %s: publishNotReadyAddresses must be true: a node becomes ready only after it has met the others by these names", h.Metadata.Name)
	}
	if *d.sts.Spec.Replicas < 3 {
		t.Errorf("StatefulSet replicas %d: want at least 3, the default N", *d.sts.Spec.Replicas)
	}
	if d.sts.Spec.PodManagementPolicy != "Parallel" {
		t.Errorf("podManagementPolicy %q, want Parallel: a node told to --join is not ready until it meets another, so OrderedReady never creates dynamo-1",
			d.sts.Spec.PodManagementPolicy)
	}
	// The others see a pod that came back on a new IP as down until
	// memberlist has forgotten its old address and the pod's next push/pull
	// has reached them; the next pod of a rolling update must wait that out.
	lan := memberlist.DefaultLANConfig()
	if readmit := lan.GossipToTheDeadTime + lan.PushPullInterval; time.Duration(d.sts.Spec.MinReadySeconds)*time.Second < readmit {
		t.Errorf("minReadySeconds %d is shorter than the time the others take to accept a rescheduled pod (%s)", d.sts.Spec.MinReadySeconds, readmit)
	}
	if sl := d.sts.Spec.Template.Spec.EnableServiceLinks; sl == nil || *sl {
		t.Errorf("enableServiceLinks must be false: a Service named dynamo would inject DYNAMO_PORT and the like, where DYNAMO_* are the binary's flags")
	}
}

func TestPortsAgree(t *testing.T) {
	d := load(t)
	c := d.container()
	listens := map[string]int{
		"DYNAMO_LISTEN":        d.listenPort(t, "DYNAMO_LISTEN"),
		"DYNAMO_PEER_LISTEN":   d.listenPort(t, "DYNAMO_PEER_LISTEN"),
		"DYNAMO_GOSSIP_LISTEN": d.listenPort(t, "DYNAMO_GOSSIP_LISTEN"),
	}
	want := map[string][]string{ // what each port must be open for
		"DYNAMO_LISTEN":        {"TCP"},
		"DYNAMO_PEER_LISTEN":   {"TCP"},
		"DYNAMO_GOSSIP_LISTEN": {"TCP", "UDP"}, // memberlist: probes on UDP, push/pull on TCP
	}
	for name, port := range listens {
		for _, proto := range want[name] {
			if _, ok := d.containerPort(intOrString{Int: port}, proto); !ok {
				t.Errorf("%s is on %d, but the container declares no %d/%s", name, port, port, proto)
			}
		}
	}
	for _, cp := range c.Ports {
		found := false
		for _, port := range listens {
			found = found || cp.ContainerPort == port
		}
		if !found {
			t.Errorf("container port %s (%d) is none of the ports the node listens on %v", cp.Name, cp.ContainerPort, listens)
		}
	}
	for _, s := range d.services {
		for _, sp := range s.Spec.Ports {
			target := sp.TargetPort
			if target == (intOrString{}) {
				target.Int = sp.Port // an unset targetPort is the port
			}
			cp, ok := d.containerPort(target, sp.Protocol)
			if !ok {
				t.Errorf("Service %s port %s: targetPort %s/%s is no container port", s.Metadata.Name, sp.Name, target, sp.Protocol)
				continue
			}
			if s.Metadata.Name != d.sts.Spec.ServiceName && cp.ContainerPort != listens["DYNAMO_LISTEN"] {
				t.Errorf("client Service %s port %s reaches %d, not the client port DYNAMO_LISTEN (%d)",
					s.Metadata.Name, sp.Name, cp.ContainerPort, listens["DYNAMO_LISTEN"])
			}
		}
	}
}

func TestProbesAskTheClientPort(t *testing.T) {
	d := load(t)
	c := d.container()
	client := d.listenPort(t, "DYNAMO_LISTEN")
	for _, p := range []struct {
		kind  string
		probe *probe
		path  string
	}{
		{"readinessProbe", c.ReadinessProbe, "/readyz"},
		{"livenessProbe", c.LivenessProbe, "/healthz"},
		// Optional; it must not ask /readyz, or a node waiting for the
		// others would be restarted.
		{"startupProbe", c.StartupProbe, "/healthz"},
	} {
		if p.probe == nil {
			if p.kind != "startupProbe" {
				t.Errorf("%s is missing", p.kind)
			}
			continue
		}
		g := p.probe.HTTPGet
		if g == nil {
			t.Errorf("%s: want an httpGet", p.kind)
			continue
		}
		if g.Path != p.path {
			t.Errorf("%s asks %q, want %q", p.kind, g.Path, p.path)
		}
		if g.Scheme != "" && g.Scheme != "HTTP" {
			t.Errorf("%s: scheme %s, but the node serves plain HTTP", p.kind, g.Scheme)
		}
		if cp, ok := d.containerPort(g.Port, "TCP"); !ok || cp.ContainerPort != client {
			t.Errorf("%s port %s is not the client port %d", p.kind, g.Port, client)
		}
	}
}

func TestNodesAreNamedAfterTheirPods(t *testing.T) {
	d := load(t)
	h := d.headless(t)
	if id, _ := d.expanded("DYNAMO_ID"); id != "{metadata.name}" {
		t.Errorf("DYNAMO_ID is %q, want the pod name (downward API metadata.name): the id must survive restarts", id)
	}
	adv, _ := d.expanded("DYNAMO_ADVERTISE")
	if want := "{metadata.name}." + h.Metadata.Name; adv != want && !strings.HasPrefix(adv, want+".") {
		t.Errorf("DYNAMO_ADVERTISE is %q, want %s: peers must dial the pod's stable DNS name", adv, want)
	}
}

func TestJoinNamesPodsOfThisStatefulSet(t *testing.T) {
	d := load(t)
	h := d.headless(t)
	gossip := d.listenPort(t, "DYNAMO_GOSSIP_LISTEN")
	join, ok := d.env("DYNAMO_JOIN")
	if !ok || strings.TrimSpace(join) == "" {
		t.Fatal("DYNAMO_JOIN is not set: each pod would start a cluster of its own")
	}
	replicas := *d.sts.Spec.Replicas
	podName := regexp.MustCompile(`^` + regexp.QuoteMeta(d.sts.Metadata.Name) + `-(\d+)$`)
	seeds := strings.Split(join, ",")
	for _, seed := range seeds {
		seed = strings.TrimSpace(seed)
		host, port, err := net.SplitHostPort(seed)
		if err != nil {
			t.Errorf("DYNAMO_JOIN entry %q: %v", seed, err)
			continue
		}
		if port != strconv.Itoa(gossip) {
			t.Errorf("DYNAMO_JOIN entry %q: port %s, but gossip listens on %d", seed, port, gossip)
		}
		labels := strings.Split(host, ".")
		m := podName.FindStringSubmatch(labels[0])
		if len(labels) < 2 || m == nil || labels[1] != h.Metadata.Name {
			t.Errorf("DYNAMO_JOIN entry %q is not <pod>.%s of StatefulSet %s", seed, h.Metadata.Name, d.sts.Metadata.Name)
			continue
		}
		if i, _ := strconv.Atoi(m[1]); i >= replicas {
			t.Errorf("DYNAMO_JOIN entry %q names a pod past the %d replicas", seed, replicas)
		}
	}
	// node/gossip.go joinLoop stops at the first seed that answers, and a
	// pod that is itself a seed answers itself: it then waits for others
	// to join it. Every pod that is not a seed keeps trying until one
	// answers, so one seed always ends with one cluster; a second seed that
	// started first would settle for itself and could stay alone.
	if len(seeds) > 1 {
		t.Errorf("DYNAMO_JOIN lists %d pods; list one (each listed pod joins itself and stops trying)", len(seeds))
	}
}

func TestDataLivesOnTheClaimedVolume(t *testing.T) {
	d := load(t)
	dir, ok := d.env("DYNAMO_DATA_DIR")
	if !ok || !filepath.IsAbs(dir) {
		t.Fatalf("DYNAMO_DATA_DIR is %q; want an absolute path on the volume (the root file system is read-only)", dir)
	}
	claims := map[string]bool{}
	for _, vct := range d.sts.Spec.VolumeClaimTemplates {
		claims[vct.Metadata.Name] = true
		if vct.Spec.Resources.Requests["storage"] == "" {
			t.Errorf("volumeClaimTemplate %s requests no storage", vct.Metadata.Name)
		}
		if !slices.Contains(vct.Spec.AccessModes, "ReadWriteOnce") && !slices.Contains(vct.Spec.AccessModes, "ReadWriteOncePod") {
			t.Errorf("volumeClaimTemplate %s access modes %v: want ReadWriteOnce", vct.Metadata.Name, vct.Spec.AccessModes)
		}
	}
	for _, m := range d.container().VolumeMounts {
		if filepath.Clean(m.MountPath) != filepath.Clean(dir) {
			continue
		}
		if !claims[m.Name] {
			t.Errorf("DYNAMO_DATA_DIR %s is mounted from %q, which is no volumeClaimTemplate: the data would not outlive the pod", dir, m.Name)
		}
		if m.ReadOnly {
			t.Errorf("DYNAMO_DATA_DIR %s is mounted read-only", dir)
		}
		return
	}
	t.Errorf("nothing is mounted at DYNAMO_DATA_DIR %s", dir)
}

func TestDisruptionBudgetTakesOneNodeAtATime(t *testing.T) {
	d := load(t)
	if len(d.pdbs) != 1 {
		t.Fatalf("want one PodDisruptionBudget, found %d", len(d.pdbs))
	}
	p := d.pdbs[0].Spec
	if p.MinAvailable != nil || p.MaxUnavailable == nil || *p.MaxUnavailable != (intOrString{Int: 1}) {
		t.Errorf("PodDisruptionBudget: want maxUnavailable 1 (N=3 with R=W=2 survives one node down), got maxUnavailable %s, minAvailable %s",
			show(p.MaxUnavailable), show(p.MinAvailable))
	}
}

func TestResources(t *testing.T) {
	d := load(t)
	r := d.container().Resources
	for _, res := range []string{"cpu", "memory"} {
		if r.Requests[res] == "" {
			t.Errorf("no %s request: the scheduler would place nodes blind", res)
		}
	}
	if cpu, lim := r.Requests["cpu"], r.Limits["cpu"]; cpu != "" && lim != "" && millicores(t, lim) < millicores(t, cpu) {
		t.Errorf("cpu limit %s is below its request %s", lim, cpu)
	}
	lim := r.Limits["memory"]
	if lim == "" {
		t.Fatal("no memory limit")
	}
	if byteCount(t, lim) < byteCount(t, r.Requests["memory"]) {
		t.Errorf("memory limit %s is below its request %s", lim, r.Requests["memory"])
	}
	if v, ok := d.env("GOMEMLIMIT"); ok && byteCount(t, v) >= byteCount(t, lim) {
		t.Errorf("GOMEMLIMIT %s must stay below the memory limit %s, or the container is killed before the runtime collects", v, lim)
	}
}

func TestEveryVariableIsAFlag(t *testing.T) {
	d := load(t)
	flags := binaryFlags(t)
	defined := map[string]bool{}
	referenced := map[string]bool{}
	for _, e := range d.container().Env {
		if defined[e.Name] {
			t.Errorf("%s is set twice", e.Name)
		}
		if e.ValueFrom == nil && e.Value.Tag != "!!str" {
			t.Errorf("%s: value %s is a %s; quote it, Kubernetes wants a string", e.Name, e.Value.Value, e.Value.Tag)
		}
		for _, ref := range envRef.FindAllString(e.Value.Value, -1) {
			name := ref[2 : len(ref)-1]
			referenced[name] = true
			if !defined[name] {
				t.Errorf("%s refers to %s, which is not set before it: Kubernetes would pass %s through as text", e.Name, ref, ref)
			}
		}
		defined[e.Name] = true
	}
	runtime := map[string]bool{"GOMEMLIMIT": true, "GOMAXPROCS": true, "GOGC": true, "GODEBUG": true}
	for _, e := range d.container().Env {
		flag, ok := strings.CutPrefix(e.Name, "DYNAMO_")
		switch {
		case ok:
			if name := strings.ToLower(strings.ReplaceAll(flag, "_", "-")); !flags[name] {
				t.Errorf("%s sets --%s, which cmd/dynamo does not define; its flags: %v", e.Name, name, slices.Sorted(maps.Keys(flags)))
			}
		case runtime[e.Name]:
		case !referenced[e.Name]:
			t.Errorf("%s is neither a DYNAMO_* flag, a Go runtime setting, nor used by another variable", e.Name)
		}
	}
}

func TestSecurityContextMatchesTheImage(t *testing.T) {
	d := load(t)
	uid := imageUser(t)
	sc := d.sts.Spec.Template.Spec.SecurityContext
	if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		t.Error("pod securityContext: runAsNonRoot must be true")
	}
	if sc.RunAsUser == nil || *sc.RunAsUser != uid {
		t.Errorf("pod securityContext: runAsUser %s, want the image's user %d", show(sc.RunAsUser), uid)
	}
	if sc.FSGroup == nil || *sc.FSGroup != uid {
		t.Errorf("pod securityContext: fsGroup %s, want %d so that the user can write the volume", show(sc.FSGroup), uid)
	}
	csc := d.container().SecurityContext
	if csc.ReadOnlyRootFilesystem == nil || !*csc.ReadOnlyRootFilesystem {
		t.Error("container securityContext: readOnlyRootFilesystem must be true (the node writes only its data dir)")
	}
	if csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation {
		t.Error("container securityContext: allowPrivilegeEscalation must be false")
	}
}

// TestShutdownFitsTheGracePeriod: after SIGTERM the node gives requests in
// flight --request-timeout plus 5s (cmd/dynamo/main.go), then flushes and
// closes its store; the kubelet must not kill it before.
func TestShutdownFitsTheGracePeriod(t *testing.T) {
	d := load(t)
	timeout := node.DefaultConfig().RequestTimeout
	if v, ok := d.env("DYNAMO_REQUEST_TIMEOUT"); ok {
		var err error
		if timeout, err = time.ParseDuration(v); err != nil {
			t.Fatalf("DYNAMO_REQUEST_TIMEOUT=%q: %v", v, err)
		}
	}
	var preStop time.Duration
	if ps := d.container().Lifecycle.PreStop; ps != nil && ps.Sleep != nil {
		preStop = time.Duration(ps.Sleep.Seconds) * time.Second
	}
	const drain, closeStore = 5 * time.Second, 10 * time.Second
	need := preStop + timeout + drain + closeStore
	g := d.sts.Spec.Template.Spec.TerminationGracePeriodSeconds
	if g == nil || time.Duration(*g)*time.Second < need {
		t.Errorf("terminationGracePeriodSeconds %s: want at least %s (preStop %s + request timeout %s + %s drain + %s to close the store)",
			show(g), need, preStop, timeout, drain, closeStore)
	}
}

// binaryFlags reads the flag names cmd/dynamo defines from its source: the
// name argument of each flag-defining call on a flag.NewFlagSet.
func binaryFlags(t *testing.T) map[string]bool {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "..", "cmd", "dynamo", "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("cmd/dynamo sources: %v (found %d)", err, len(files))
	}
	// Definers whose name comes second (after the pointer or Value); in the
	// others (Bool, String, Func, ...) it comes first.
	nameSecond := func(method string) bool { return strings.HasSuffix(method, "Var") }
	definers := map[string]bool{}
	for _, typ := range []string{"Bool", "Duration", "Float64", "Int", "Int64", "String", "Uint", "Uint64"} {
		definers[typ], definers[typ+"Var"] = true, true
	}
	for _, m := range []string{"Var", "TextVar", "Func", "BoolFunc"} {
		definers[m] = true
	}
	flags := map[string]bool{}
	fset := token.NewFileSet()
	for _, path := range files {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		flagSets := map[string]bool{}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.AssignStmt:
				for i, rhs := range n.Rhs {
					if call, ok := rhs.(*ast.CallExpr); ok && isSelector(call.Fun, "flag", "NewFlagSet") && i < len(n.Lhs) {
						if id, ok := n.Lhs[i].(*ast.Ident); ok {
							flagSets[id.Name] = true
						}
					}
				}
			case *ast.CallExpr:
				sel, ok := n.Fun.(*ast.SelectorExpr)
				if !ok || !definers[sel.Sel.Name] {
					return true
				}
				recv, ok := sel.X.(*ast.Ident)
				if !ok || !flagSets[recv.Name] {
					return true
				}
				i := 0
				if nameSecond(sel.Sel.Name) {
					i = 1
				}
				lit, ok := n.Args[i].(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					t.Fatalf("%s: a flag whose name is not a literal; this test cannot read it", fset.Position(n.Pos()))
				}
				name, _ := strconv.Unquote(lit.Value)
				flags[name] = true
			}
			return true
		})
	}
	for _, must := range []string{"id", "listen", "join", "data-dir"} {
		if !flags[must] {
			t.Fatalf("read flags %v from cmd/dynamo, but not --%s: the reader has gone stale", slices.Sorted(maps.Keys(flags)), must)
		}
	}
	return flags
}

func isSelector(e ast.Expr, pkg, name string) bool {
	sel, ok := e.(*ast.SelectorExpr)
	if !ok || sel.Sel.Name != name {
		return false
	}
	id, ok := sel.X.(*ast.Ident)
	return ok && id.Name == pkg
}

// imageUser is the uid of the Dockerfile's final USER line.
func imageUser(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	user := ""
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 2 && strings.EqualFold(f[0], "USER") {
			user = f[1]
		}
	}
	uid, _, _ := strings.Cut(user, ":")
	n, err := strconv.ParseInt(uid, 10, 64)
	if err != nil {
		t.Fatalf("Dockerfile USER %q: want a numeric uid: %v", user, err)
	}
	return n
}

// byteCount parses a Kubernetes memory quantity (512Mi, 1G, 1048576) or a Go
// GOMEMLIMIT (900MiB).
func byteCount(t *testing.T, q string) int64 {
	t.Helper()
	units := []struct {
		suffix string
		mult   int64
	}{ // longest first
		{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
		{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40},
		{"k", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12}, {"B", 1},
	}
	mult := int64(1)
	num := q
	for _, u := range units {
		if s, ok := strings.CutSuffix(q, u.suffix); ok {
			num, mult = s, u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil {
		t.Fatalf("quantity %q: %v", q, err)
	}
	return n * mult
}

// millicores parses a Kubernetes CPU quantity (250m, 2, 0.5).
func millicores(t *testing.T, q string) int64 {
	t.Helper()
	if s, ok := strings.CutSuffix(q, "m"); ok {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("cpu %q: %v", q, err)
		}
		return n
	}
	f, err := strconv.ParseFloat(q, 64)
	if err != nil {
		t.Fatalf("cpu %q: %v", q, err)
	}
	return int64(f * 1000)
}

// show prints an optional field: its value, or "unset".
func show[T any](p *T) string {
	if p == nil {
		return "unset"
	}
	return fmt.Sprint(*p)
}
