package deploycheck

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"pingate/cmd/internal/clitest"
	"pingate/integration/gateway"
	"pingate/integration/gateway/gatewaytest"
	"pingate/integration/issuersim"
	"pingate/integration/loadgen"
	"pingate/integration/redislimit"
	"pingate/iso8583"
	"pingate/pinblock"
	"pingate/pinblock/devkeys"
)

// Tests of deploy/: every manifest, the compose file, the systemd unit and
// the alert rules parse, and every port, config key, subcommand and metric
// name they mention exists in the code.

// opsRepo is the repository root (tests run in cmd/internal/deploycheck).
const opsRepo = "../../.."

func opsPath(parts ...string) string { return filepath.Join(append([]string{opsRepo}, parts...)...) }

func makeBuildLine(t *testing.T) string { return clitest.MakeBuildLine(t, opsRepo) }

// hasCommand reports whether the built pingate has the command name: it
// answers "name --help" with its usage.
func hasCommand(t *testing.T, name string) bool {
	t.Helper()
	out, _, code := clitest.Exec(t, clitest.Build(t, "pingate/cmd/pingate"), name, "--help")
	return code == 0 && strings.Contains(out, "Usage: pingate "+name)
}

// startGateway runs the embedded development gateway in-process
// (gatewaytest.Start), without the branch channel, once its issuer link has
// signed on.
func startGateway(t *testing.T) *gateway.Gateway {
	t.Helper()
	g := gatewaytest.Start(t, func(c *gateway.Config) {
		c.Instance = "deploycheck"
		off := false
		c.Branch.Enabled = &off
	})
	deadline := time.Now().Add(10 * time.Second)
	for !g.SignedOn()[gateway.DevIssuer] {
		if time.Now().After(deadline) {
			t.Fatal("the issuer link did not sign on within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return g
}

// changePIN sends op and fails the test unless it is answered.
func changePIN(t *testing.T, c *loadgen.Client, op loadgen.Op) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if _, err := c.Send(ctx, op); err != nil {
		t.Fatal(err)
	}
}

// yamlDocs decodes every document of a YAML file.
func yamlDocs(t *testing.T, path string) []map[string]any {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	var docs []map[string]any
	for {
		var d map[string]any
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if d != nil {
			docs = append(docs, d)
		}
	}
	return docs
}

// decodeYAML decodes a single-document YAML file into v, strictly.
func decodeYAML(t *testing.T, path string, v any) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func TestDeployKustomizationsReferenceExistingFiles(t *testing.T) {
	for _, dir := range []string{"deploy/kubernetes/base", "deploy/kubernetes/overlays/example", "deploy/kubernetes/overlays/durable"} {
		var k struct {
			Resources []string `yaml:"resources"`
			Patches   []struct {
				Path string `yaml:"path"`
			} `yaml:"patches"`
		}
		decodeYAML(t, opsPath(dir, "kustomization.yaml"), &k)
		if len(k.Resources) == 0 {
			t.Errorf("%s: no resources", dir)
		}
		refs := append([]string(nil), k.Resources...)
		for _, p := range k.Patches {
			refs = append(refs, p.Path)
		}
		for _, r := range refs {
			p := opsPath(dir, r)
			st, err := os.Stat(p)
			if err != nil {
				t.Errorf("%s: resource %s: %v", dir, r, err)
				continue
			}
			if st.IsDir() {
				if _, err := os.Stat(filepath.Join(p, "kustomization.yaml")); err != nil {
					t.Errorf("%s: %s is a directory without kustomization.yaml", dir, r)
				}
				continue
			}
			for i, d := range yamlDocs(t, p) {
				if d["apiVersion"] == nil || d["kind"] == nil {
					t.Errorf("%s document %d: no apiVersion or kind", p, i)
				}
			}
		}
	}
	// Every YAML file under deploy/ parses, and no file in kubernetes/ is
	// left out of its kustomization.
	err := filepath.WalkDir(opsPath("deploy"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && (strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml")) {
			yamlDocs(t, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestDeployKustomizeBuild builds both kustomizations with kubectl's
// embedded kustomize when kubectl is installed.
func TestDeployKustomizeBuild(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl not installed")
	}
	workload := map[string]string{"deploy/kubernetes/base": "Deployment", "deploy/kubernetes/overlays/example": "Deployment",
		"deploy/kubernetes/overlays/durable": "StatefulSet"}
	for _, dir := range []string{"deploy/kubernetes/base", "deploy/kubernetes/overlays/example", "deploy/kubernetes/overlays/durable"} {
		out, err := exec.Command(kubectl, "kustomize", opsPath(dir)).Output()
		if err != nil {
			t.Fatalf("kubectl kustomize %s: %v", dir, err)
		}
		kinds := map[string]int{}
		dec := yaml.NewDecoder(bytes.NewReader(out))
		for {
			var d map[string]any
			if err := dec.Decode(&d); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatal(err)
			}
			kinds[fmt.Sprint(d["kind"])]++
		}
		for _, k := range []string{workload[dir], "Service", "ConfigMap", "PodDisruptionBudget", "NetworkPolicy", "ServiceAccount"} {
			if kinds[k] == 0 {
				t.Errorf("kustomize %s: no %s", dir, k)
			}
		}
		if kinds["Deployment"]+kinds["StatefulSet"] != 1 {
			t.Errorf("kustomize %s: %d Deployments and %d StatefulSets, want one workload", dir, kinds["Deployment"], kinds["StatefulSet"])
		}
		if kinds["Service"] < 2 {
			t.Errorf("kustomize %s: %d Services, want one for ISO 8583 and one for HTTP", dir, kinds["Service"])
		}
		if kinds["Secret"] != 0 {
			t.Errorf("kustomize %s: renders a Secret; secrets are referenced, never shipped", dir)
		}
	}
}

// TestDeployDurableMatchesBase: the durable overlay's StatefulSet runs the
// base Deployment's pod template, except that its "state" volume (journal
// and owed reversals) is a claim per pod rather than an emptyDir; it is
// governed by the overlay's headless Service and keeps the base's replicas
// and selector.
func TestDeployDurableMatchesBase(t *testing.T) {
	dep := yamlDocs(t, opsPath("deploy/kubernetes/base/deployment.yaml"))[0]
	sts := yamlDocs(t, opsPath("deploy/kubernetes/overlays/durable/statefulset.yaml"))[0]
	svc := yamlDocs(t, opsPath("deploy/kubernetes/overlays/durable/service-headless.yaml"))[0]
	get := func(m any, path ...string) any {
		for _, k := range path {
			mm, _ := m.(map[string]any)
			m = mm[k]
		}
		return m
	}
	if sts["kind"] != "StatefulSet" || get(sts, "metadata", "name") != get(dep, "metadata", "name") {
		t.Fatalf("statefulset.yaml is a %v named %v, want a StatefulSet named like the Deployment", sts["kind"], get(sts, "metadata", "name"))
	}
	for _, f := range []string{"replicas", "selector", "revisionHistoryLimit"} {
		if !reflect.DeepEqual(get(dep, "spec", f), get(sts, "spec", f)) {
			t.Errorf("spec.%s: StatefulSet %v, Deployment %v", f, get(sts, "spec", f), get(dep, "spec", f))
		}
	}
	if get(svc, "spec", "clusterIP") != "None" || get(sts, "spec", "serviceName") != get(svc, "metadata", "name") {
		t.Errorf("serviceName %v must name the headless Service %v (clusterIP None)", get(sts, "spec", "serviceName"), get(svc, "metadata", "name"))
	}
	claims, _ := get(sts, "spec", "volumeClaimTemplates").([]any)
	if len(claims) != 1 || get(claims[0], "metadata", "name") != "state" {
		t.Fatalf("volumeClaimTemplates = %v, want one claim named state", claims)
	}
	// The Deployment's pod template without its state emptyDir is the
	// StatefulSet's.
	tmpl := get(dep, "spec", "template").(map[string]any)
	podSpec := get(tmpl, "spec").(map[string]any)
	var vols []any
	for _, v := range podSpec["volumes"].([]any) {
		if get(v, "name") == "state" {
			if get(v, "emptyDir") == nil {
				t.Errorf("the base's state volume is %v, want an emptyDir", v)
			}
			continue
		}
		vols = append(vols, v)
	}
	podSpec["volumes"] = vols
	if got := get(sts, "spec", "template"); !reflect.DeepEqual(got, tmpl) {
		t.Error("the StatefulSet's pod template differs from the Deployment's beyond the state volume: copy the change across")
	}
}

// k8sDeployment is the part of a Deployment the tests check.
type k8sDeployment struct {
	Spec struct {
		Replicas int `yaml:"replicas"`
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		Template struct {
			Metadata struct {
				Labels map[string]string `yaml:"labels"`
			} `yaml:"metadata"`
			Spec struct {
				TerminationGracePeriodSeconds int `yaml:"terminationGracePeriodSeconds"`
				SecurityContext               struct {
					RunAsNonRoot bool `yaml:"runAsNonRoot"`
					RunAsUser    int  `yaml:"runAsUser"`
				} `yaml:"securityContext"`
				Containers []struct {
					Name  string   `yaml:"name"`
					Args  []string `yaml:"args"`
					Ports []struct {
						Name          string `yaml:"name"`
						ContainerPort int    `yaml:"containerPort"`
					} `yaml:"ports"`
					LivenessProbe  *k8sProbe `yaml:"livenessProbe"`
					ReadinessProbe *k8sProbe `yaml:"readinessProbe"`
					Resources      struct {
						Requests map[string]string `yaml:"requests"`
						Limits   map[string]string `yaml:"limits"`
					} `yaml:"resources"`
					SecurityContext struct {
						RunAsNonRoot             bool `yaml:"runAsNonRoot"`
						ReadOnlyRootFilesystem   bool `yaml:"readOnlyRootFilesystem"`
						AllowPrivilegeEscalation bool `yaml:"allowPrivilegeEscalation"`
					} `yaml:"securityContext"`
					VolumeMounts []struct {
						Name      string `yaml:"name"`
						MountPath string `yaml:"mountPath"`
						ReadOnly  bool   `yaml:"readOnly"`
					} `yaml:"volumeMounts"`
				} `yaml:"containers"`
				Volumes []struct {
					Name      string         `yaml:"name"`
					Secret    map[string]any `yaml:"secret"`
					ConfigMap map[string]any `yaml:"configMap"`
					EmptyDir  map[string]any `yaml:"emptyDir"`
				} `yaml:"volumes"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type k8sProbe struct {
	HTTPGet struct {
		Path string `yaml:"path"`
		Port string `yaml:"port"`
	} `yaml:"httpGet"`
}

type k8sService struct {
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Spec struct {
		Selector map[string]string `yaml:"selector"`
		Ports    []struct {
			Port       int    `yaml:"port"`
			TargetPort string `yaml:"targetPort"`
		} `yaml:"ports"`
	} `yaml:"spec"`
}

// k8sConfig decodes the ConfigMap's pingate.yaml with the gateway's own
// strict loader.
func k8sConfig(t *testing.T) gateway.Config {
	t.Helper()
	var cm struct {
		Data map[string]string `yaml:"data"`
	}
	decodeYAML(t, opsPath("deploy/kubernetes/base/configmap.yaml"), &cm)
	text, ok := cm.Data["pingate.yaml"]
	if !ok {
		t.Fatal("configmap.yaml: no data.pingate.yaml")
	}
	p := filepath.Join(t.TempDir(), "pingate.yaml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := gateway.LoadConfig(p)
	if err != nil {
		t.Fatalf("ConfigMap pingate.yaml: %v", err)
	}
	return cfg
}

func addrPort(t *testing.T, what, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("%s %q: %v", what, addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("%s %q: port: %v", what, addr, err)
	}
	return n
}

// acquirerWarnings are the production warnings about acquirers: a shipped
// production config requires sign-on and takes key blocks only.
func acquirerWarnings(c gateway.Config) []string {
	var out []string
	for _, w := range c.WithDefaults().ProductionWarnings() {
		if strings.HasPrefix(w, "routing.acquirers") {
			out = append(out, w)
		}
	}
	return out
}

// TestDeployConfigsValidate: every pingate config shipped in deploy/ passes
// the strict loader (no unknown key) and Validate.
func TestDeployConfigsValidate(t *testing.T) {
	cfg := k8sConfig(t)
	if err := cfg.WithDefaults().Validate(); err != nil {
		t.Errorf("ConfigMap pingate.yaml: Validate: %v", err)
	}
	if !cfg.Production {
		t.Error("ConfigMap pingate.yaml: production is off")
	}
	if w := acquirerWarnings(cfg); len(w) != 0 {
		t.Errorf("ConfigMap pingate.yaml: production warnings %q", w)
	}
	for _, p := range []string{"deploy/compose/gateway.yaml", "deploy/systemd/pingate.yaml"} {
		c, err := gateway.LoadConfig(opsPath(p))
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		if err := c.WithDefaults().Validate(); err != nil {
			t.Errorf("%s: Validate: %v", p, err)
		}
		if w := acquirerWarnings(c); len(w) != 0 {
			t.Errorf("%s: production warnings %q", p, w)
		}
	}
}

// TestDeployDeploymentMatchesConfig checks the Deployment, Services,
// PodDisruptionBudget and NetworkPolicy against each other and against the
// ConfigMap's pingate config: ports, probes, mounts of every path the config
// names.
func TestDeployDeploymentMatchesConfig(t *testing.T) {
	cfg := k8sConfig(t).WithDefaults()
	var d k8sDeployment
	decodeYAML(t, opsPath("deploy/kubernetes/base/deployment.yaml"), &d)
	if d.Spec.Replicas < 3 {
		t.Errorf("replicas = %d, want at least 3", d.Spec.Replicas)
	}
	if len(d.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(d.Spec.Template.Spec.Containers))
	}
	c := d.Spec.Template.Spec.Containers[0]
	ports := map[string]int{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if got, want := ports["iso8583"], addrPort(t, "acquirer_listener.addr", cfg.Acquirer.Addr); got != want {
		t.Errorf("container port iso8583 = %d, config acquirer_listener.addr port %d", got, want)
	}
	if got, want := ports["http"], addrPort(t, "http.addr", cfg.HTTP.Addr); got != want {
		t.Errorf("container port http = %d, config http.addr port %d", got, want)
	}
	if host, _, _ := net.SplitHostPort(cfg.Acquirer.Addr); host != "0.0.0.0" && host != "" {
		t.Errorf("acquirer_listener.addr %s is not reachable from the Service", cfg.Acquirer.Addr)
	}
	if host, _, _ := net.SplitHostPort(cfg.Admin.Addr); host != "127.0.0.1" {
		t.Errorf("admin.addr %s: the unauthenticated admin listener must stay on loopback", cfg.Admin.Addr)
	}
	if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" || ports[c.LivenessProbe.HTTPGet.Port] == 0 {
		t.Errorf("liveness probe %+v: want GET /healthz on a named container port", c.LivenessProbe)
	}
	if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" || c.ReadinessProbe.HTTPGet.Port != "http" {
		t.Errorf("readiness probe %+v: want GET /readyz on port http", c.ReadinessProbe)
	}
	for _, r := range []string{"cpu", "memory"} {
		if c.Resources.Requests[r] == "" || c.Resources.Limits[r] == "" {
			t.Errorf("resources: %s request or limit missing", r)
		}
	}
	sc := c.SecurityContext
	if !sc.RunAsNonRoot || !sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation {
		t.Errorf("container securityContext %+v: want non-root, read-only root, no privilege escalation", sc)
	}
	if !d.Spec.Template.Spec.SecurityContext.RunAsNonRoot || d.Spec.Template.Spec.SecurityContext.RunAsUser == 0 {
		t.Error("pod securityContext: want runAsNonRoot and a non-zero runAsUser")
	}
	if got, grace := time.Duration(d.Spec.Template.Spec.TerminationGracePeriodSeconds)*time.Second, cfg.Acquirer.ShutdownGrace; got <= grace {
		t.Errorf("terminationGracePeriodSeconds %s must exceed acquirer_listener.shutdown_grace %s", got, grace)
	}
	// The args are a serve command line with a --config inside the config mount.
	if len(c.Args) < 3 || c.Args[0] != "serve" {
		t.Fatalf("args %q: want serve --config …", c.Args)
	}
	if !hasCommand(t, c.Args[0]) {
		t.Errorf("args: no subcommand %q", c.Args[0])
	}
	checkServeFlags(t, "deployment args", c.Args[1:])

	kind := map[string]string{}
	for _, v := range d.Spec.Template.Spec.Volumes {
		switch {
		case v.Secret != nil:
			kind[v.Name] = "secret"
		case v.ConfigMap != nil:
			kind[v.Name] = "configmap"
		case v.EmptyDir != nil:
			kind[v.Name] = "emptydir"
		}
	}
	mountOf := func(path string) (volume string, readOnly bool) {
		best := ""
		for _, m := range c.VolumeMounts {
			if strings.HasPrefix(path, m.MountPath+"/") && len(m.MountPath) > len(best) {
				best, volume, readOnly = m.MountPath, m.Name, m.ReadOnly
			}
		}
		return volume, readOnly
	}
	for _, m := range c.VolumeMounts {
		if kind[m.Name] == "" {
			t.Errorf("volume mount %s: no volume %s", m.MountPath, m.Name)
		}
	}
	cfgPath := c.Args[2]
	if v, _ := mountOf(cfgPath); kind[v] != "configmap" {
		t.Errorf("--config %s is not in the ConfigMap mount", cfgPath)
	}
	for what, p := range map[string]string{
		"security.payshield.key_file": cfg.Security.PayShield.KeyFile, "security.custody_log": cfg.Security.CustodyLog,
		"security.card_token_key_file": cfg.Security.CardTokenKeyFile, "security.payshield.tls.ca_file": cfg.Security.PayShield.TLS.CAFile,
		"security.payshield.tls.cert_file": cfg.Security.PayShield.TLS.CertFile, "security.payshield.tls.key_file": cfg.Security.PayShield.TLS.KeyFile,
	} {
		if v, ro := mountOf(p); kind[v] != "secret" || !ro {
			t.Errorf("%s %s: not in a read-only Secret mount", what, p)
		}
	}
	for what, p := range map[string]string{"events.journal_dir": cfg.Events.JournalDir, "reversals.dir": cfg.Reversals.Dir} {
		if v, ro := mountOf(p); kind[v] != "emptydir" || ro {
			t.Errorf("%s %s: not in a writable volume (the root file system is read-only)", what, p)
		}
	}

	// Services select the pods and target named container ports.
	svcPorts := map[int]bool{}
	for _, f := range []string{"service-iso8583.yaml", "service-http.yaml"} {
		var s k8sService
		decodeYAML(t, opsPath("deploy/kubernetes/base", f), &s)
		for k, v := range s.Spec.Selector {
			if d.Spec.Template.Metadata.Labels[k] != v {
				t.Errorf("%s: selector %s=%s matches no pod label", f, k, v)
			}
		}
		for _, p := range s.Spec.Ports {
			if ports[p.TargetPort] == 0 {
				t.Errorf("%s: targetPort %q is no container port", f, p.TargetPort)
			}
			svcPorts[ports[p.TargetPort]] = true
		}
	}
	if !svcPorts[ports["iso8583"]] || !svcPorts[ports["http"]] {
		t.Errorf("Services expose container ports %v, want both iso8583 and http", svcPorts)
	}

	var pdb struct {
		Spec struct {
			MinAvailable int `yaml:"minAvailable"`
			Selector     struct {
				MatchLabels map[string]string `yaml:"matchLabels"`
			} `yaml:"selector"`
		} `yaml:"spec"`
	}
	decodeYAML(t, opsPath("deploy/kubernetes/base/pdb.yaml"), &pdb)
	if pdb.Spec.MinAvailable < 1 || pdb.Spec.MinAvailable >= d.Spec.Replicas {
		t.Errorf("PDB minAvailable %d with %d replicas: want at least 1 and fewer than the replicas", pdb.Spec.MinAvailable, d.Spec.Replicas)
	}
	for k, v := range pdb.Spec.Selector.MatchLabels {
		if d.Spec.Template.Metadata.Labels[k] != v {
			t.Errorf("PDB selector %s=%s matches no pod label", k, v)
		}
	}

	// NetworkPolicy: ingress only on the listeners, egress to every host:port
	// the config dials.
	var np struct {
		Spec struct {
			Ingress []struct {
				Ports []struct {
					Port int `yaml:"port"`
				} `yaml:"ports"`
			} `yaml:"ingress"`
			Egress []struct {
				Ports []struct {
					Port int `yaml:"port"`
				} `yaml:"ports"`
			} `yaml:"egress"`
		} `yaml:"spec"`
	}
	decodeYAML(t, opsPath("deploy/kubernetes/base/networkpolicy.yaml"), &np)
	for _, in := range np.Spec.Ingress {
		for _, p := range in.Ports {
			if p.Port != ports["iso8583"] && p.Port != ports["http"] {
				t.Errorf("NetworkPolicy ingress port %d: pingate listens there on nothing reachable", p.Port)
			}
		}
	}
	egress := map[int]bool{}
	for _, e := range np.Spec.Egress {
		for _, p := range e.Ports {
			egress[p.Port] = true
		}
	}
	dials := map[string]string{"telemetry.otlp_endpoint": cfg.Telemetry.OTLPEndpoint}
	for _, is := range cfg.Routing.Issuers {
		for _, h := range is.Hosts {
			dials["routing.issuers ("+is.ID+") "+h] = h
		}
	}
	for _, a := range cfg.Limits.Addrs {
		dials["limits.addrs "+a] = a
	}
	for _, b := range cfg.Events.KafkaBrokers {
		dials["events.kafka_brokers "+b] = b
	}
	for what, a := range dials {
		if a != "" && !egress[addrPort(t, what, a)] {
			t.Errorf("NetworkPolicy: no egress to the port of %s", what)
		}
	}
}

// checkServeFlags runs `pingate serve ARGS --config <missing file>`: every
// flag of ARGS must be one runServe defines (an unknown flag is a usage
// error, exit 2), and it then stops at reading the missing config (exit 1)
// before anything starts.
func checkServeFlags(t *testing.T, what string, args []string) {
	t.Helper()
	missing := filepath.Join(t.TempDir(), "missing.yaml")
	_, errOut, code := clitest.Exec(t, clitest.Build(t, "pingate/cmd/pingate"), append(append([]string{"serve"}, args...), "--config", missing)...)
	if code != 1 || !strings.Contains(errOut, "missing.yaml") {
		t.Errorf("%s: pingate serve %q: exit %d (%s), want the flags accepted", what, args, code, strings.TrimSpace(errOut))
	}
}

// TestDeployCompose: the compose file parses; both gateways and the issuer
// simulator run existing subcommands; the config they mount validates and
// names the compose services and ports.
func TestDeployCompose(t *testing.T) {
	var cf struct {
		Services map[string]struct {
			Command     []string          `yaml:"command"`
			Entrypoint  []string          `yaml:"entrypoint"`
			Ports       []string          `yaml:"ports"`
			Volumes     []string          `yaml:"volumes"`
			Environment map[string]string `yaml:"environment"`
			Image       string            `yaml:"image"`
			Build       *struct {
				Context    string `yaml:"context"`
				Dockerfile string `yaml:"dockerfile"`
				Target     string `yaml:"target"`
			} `yaml:"build"`
		} `yaml:"services"`
	}
	decodeYAML(t, opsPath("deploy/compose/compose.yaml"), &cf)
	for _, name := range []string{"gateway-a", "gateway-b", "issuer-sim", "redis", "kafka"} {
		if _, ok := cf.Services[name]; !ok {
			t.Errorf("compose: no service %s", name)
		}
	}
	if env := cf.Services["kafka"].Environment; !strings.Contains(env["KAFKA_PROCESS_ROLES"], "controller") {
		t.Errorf("compose kafka: KAFKA_PROCESS_ROLES %q: want KRaft (broker,controller)", env["KAFKA_PROCESS_ROLES"])
	}
	sim := cf.Services["issuer-sim"]
	if len(sim.Command) == 0 || sim.Command[0] != "issuer-sim" {
		t.Fatalf("compose issuer-sim: command %q", sim.Command)
	}
	// The simulator is a development tool: the dev target of the Dockerfile
	// (pingate-dev), which must take the command line compose gives it.
	if sim.Build == nil || sim.Build.Target != "dev" {
		t.Errorf("compose issuer-sim: build %+v, want deploy/Dockerfile's target dev (pingate-dev)", sim.Build)
	}
	if out, errOut, code := clitest.Exec(t, clitest.Build(t, "pingate/cmd/pingate-dev"), append(append([]string{}, sim.Command...), "--help")...); code != 0 || !strings.Contains(out, "Usage: pingate-dev issuer-sim") {
		t.Errorf("compose issuer-sim: pingate-dev %s --help = exit %d, %q", strings.Join(sim.Command, " "), code, errOut)
	}
	simPort := 0
	for i, a := range sim.Command {
		if a == "--addr" && i+1 < len(sim.Command) {
			simPort = addrPort(t, "issuer-sim --addr", sim.Command[i+1])
		}
	}
	for _, name := range []string{"gateway-a", "gateway-b"} {
		s := cf.Services[name]
		if s.Build == nil || filepath.Clean(filepath.Join("deploy/compose", s.Build.Context, s.Build.Dockerfile)) != "deploy/Dockerfile" {
			t.Errorf("compose %s: does not build deploy/Dockerfile", name)
		}
		if len(s.Command) < 3 || s.Command[0] != "serve" {
			t.Fatalf("compose %s: command %q: want serve --config …", name, s.Command)
		}
		checkServeFlags(t, "compose "+name, s.Command[1:])
		var cfgFile string
		for _, v := range s.Volumes {
			parts := strings.Split(v, ":")
			if len(parts) >= 2 && parts[1] == s.Command[2] {
				cfgFile = filepath.Join("deploy/compose", parts[0])
			}
		}
		if cfgFile == "" {
			t.Fatalf("compose %s: --config %s is not mounted from a file", name, s.Command[2])
		}
		cfg, err := gateway.LoadConfig(opsPath(cfgFile))
		if err != nil {
			t.Fatal(err)
		}
		cfg = cfg.WithDefaults()
		published := false
		for _, p := range s.Ports {
			parts := strings.Split(p, ":")
			if parts[len(parts)-1] == strconv.Itoa(addrPort(t, "acquirer_listener.addr", cfg.Acquirer.Addr)) {
				published = true
			}
		}
		if !published {
			t.Errorf("compose %s: the acquirer port is not published", name)
		}
		for _, is := range cfg.Routing.Issuers {
			for _, h := range is.Hosts {
				host, _, _ := net.SplitHostPort(h)
				if _, ok := cf.Services[host]; !ok || addrPort(t, "issuer host", h) != simPort {
					t.Errorf("compose %s: issuer host %s is not the issuer-sim service's port %d", name, h, simPort)
				}
			}
		}
		for _, a := range append(append([]string(nil), cfg.Limits.Addrs...), cfg.Events.KafkaBrokers...) {
			host, _, _ := net.SplitHostPort(a)
			if _, ok := cf.Services[host]; !ok {
				t.Errorf("compose %s: %s is no compose service", name, a)
			}
		}
	}
}

// TestDeploySystemdUnit: the unit runs serve with a config that validates,
// reloads with SIGHUP and gives the drain time to finish.
func TestDeploySystemdUnit(t *testing.T) {
	f, err := os.Open(opsPath("deploy/systemd/pingate.service"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	kv := map[string]string{}
	sections := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			sections[line] = true
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("pingate.service: line %q is no key=value", line)
			}
			kv[k] = v
		}
	}
	for _, s := range []string{"[Unit]", "[Service]", "[Install]"} {
		if !sections[s] {
			t.Errorf("pingate.service: no %s section", s)
		}
	}
	args := strings.Fields(kv["ExecStart"])
	if len(args) < 4 || args[1] != "serve" {
		t.Fatalf("ExecStart %q: want pingate serve --config FILE", kv["ExecStart"])
	}
	checkServeFlags(t, "ExecStart", args[2:])
	if !strings.Contains(kv["ExecReload"], "-HUP") {
		t.Errorf("ExecReload %q: want SIGHUP", kv["ExecReload"])
	}
	if pre := strings.Fields(kv["ExecStartPre"]); len(pre) < 2 || pre[1] != "check-config" {
		t.Errorf("ExecStartPre %q: want pingate check-config", kv["ExecStartPre"])
	} else if !hasCommand(t, pre[1]) {
		t.Errorf("ExecStartPre: no subcommand %s", pre[1])
	}
	cfg, err := gateway.LoadConfig(opsPath("deploy/systemd/pingate.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg = cfg.WithDefaults()
	stop, err := strconv.Atoi(kv["TimeoutStopSec"])
	if err != nil || time.Duration(stop)*time.Second <= cfg.Acquirer.ShutdownGrace {
		t.Errorf("TimeoutStopSec %q must exceed shutdown_grace %s", kv["TimeoutStopSec"], cfg.Acquirer.ShutdownGrace)
	}
	if kv["User"] == "" || kv["User"] == "root" {
		t.Errorf("User %q: want an unprivileged user", kv["User"])
	}
	if !strings.HasPrefix(cfg.Events.JournalDir, "/var/lib/"+kv["StateDirectory"]+"/") {
		t.Errorf("journal_dir %s is outside StateDirectory %s (ProtectSystem=strict leaves only it writable)", cfg.Events.JournalDir, kv["StateDirectory"])
	}
}

// TestDockerfileBuildsWithTheMakefileLine: the image is built with exactly
// the build line of `make build`, multi-stage, static, non-root.
func TestDockerfileBuildsWithTheMakefileLine(t *testing.T) {
	line := makeBuildLine(t)
	if !strings.Contains(line, "CGO_ENABLED=0") || !strings.Contains(line, "go build") {
		t.Errorf("Makefile build line %q: want a static (CGO_ENABLED=0) go build", line)
	}
	raw, err := os.ReadFile(opsPath("deploy/Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	df := string(raw)
	if !strings.Contains(df, "\nRUN "+line+"\n") {
		t.Errorf("deploy/Dockerfile does not RUN the Makefile build line %q", line)
	}
	out := regexp.MustCompile(`-o (\S+)`).FindStringSubmatch(line)
	if out == nil || !strings.Contains(df, "COPY --from=build /src/"+out[1]+" ") {
		t.Errorf("deploy/Dockerfile does not copy the built binary %v into the final stage", out)
	}
	if n := strings.Count(df, "\nFROM "); n < 2 {
		t.Errorf("deploy/Dockerfile has %d stages, want a multi-stage build", n)
	}
	user := regexp.MustCompile(`(?m)^USER (\S+)`).FindStringSubmatch(df)
	if user == nil || strings.HasPrefix(user[1], "0") || user[1] == "root" {
		t.Errorf("deploy/Dockerfile: USER %v, want a non-root user", user)
	}
}

// metricNames scrapes /metrics and returns every sample name.
func metricNames(t *testing.T, httpAddr string) map[string]bool {
	t.Helper()
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	names := map[string]bool{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if l == "" || l[0] == '#' {
			continue
		}
		if i := strings.IndexAny(l, "{ "); i > 0 {
			names[l[:i]] = true
		}
	}
	return names
}

// sourceMetricNames lists the Prometheus names of every OTel instrument
// created with a literal "pingate." name (or a Metric… constant) in the Go
// sources: the instruments that exist but may have recorded nothing yet in a
// short test, so that they are missing from a scrape.
func sourceMetricNames(t *testing.T) map[string]bool {
	t.Helper()
	consts := map[string]string{}
	var srcs []string
	err := filepath.WalkDir(opsRepo, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "deploy" || d.Name() == "target") {
			return filepath.SkipDir
		}
		if strings.HasSuffix(p, ".go") && !strings.HasSuffix(p, "_test.go") {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			srcs = append(srcs, string(b))
			for _, m := range regexp.MustCompile(`(Metric\w+)\s*=\s*"(pingate\.[^"]+)"`).FindAllStringSubmatch(string(b), -1) {
				consts[m[1]] = m[2]
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	inst := regexp.MustCompile(`(Int64|Float64)(Counter|UpDownCounter|Histogram|ObservableGauge|ObservableCounter|ObservableUpDownCounter|Gauge)\(\s*("pingate\.[^"]+"|Metric\w+)`)
	unit := regexp.MustCompile(`^[^\n]*(?:\n[^\n]*)?WithUnit\("([^"]*)"\)`)
	names := map[string]bool{}
	for _, src := range srcs {
		for _, loc := range inst.FindAllStringSubmatchIndex(src, -1) {
			kind := src[loc[4]:loc[5]]
			name := src[loc[6]:loc[7]]
			if strings.HasPrefix(name, `"`) {
				name = strings.Trim(name, `"`)
			} else if name = consts[name]; name == "" {
				continue
			}
			prom := strings.ReplaceAll(name, ".", "_")
			if u := unit.FindStringSubmatch(src[loc[1]:]); u != nil && u[1] == "s" {
				prom += "_seconds"
			}
			switch {
			case kind == "Counter" || kind == "ObservableCounter":
				names[prom+"_total"] = true
			case kind == "Histogram":
				for _, s := range []string{"_bucket", "_sum", "_count"} {
					names[prom+s] = true
				}
			default:
				names[prom] = true
			}
		}
	}
	return names
}

// TestDeployMetricNamesExist: every pingate_* series the alert rules and the
// Grafana dashboard use is one pingate exports — scraped from a gateway that
// served requests and a reload, or (for instruments that recorded nothing in
// this short run) created in the Go sources under that name.
func TestDeployMetricNamesExist(t *testing.T) {
	g := startGateway(t)
	g.SetReloadSource(func() (gateway.Config, error) {
		c := gateway.EmbeddedConfig()
		c.Instance = g.Config().Instance
		c.Acquirer.Addr, c.HTTP.Addr = g.Config().Acquirer.Addr, g.Config().HTTP.Addr
		c.Events.JournalDir, c.Reversals.Dir = g.Config().Events.JournalDir, g.Config().Reversals.Dir
		c.Branch, c.Admin = g.Config().Branch, g.Config().Admin
		return c, nil
	})
	ctx := context.Background()
	client, err := loadgen.Dial(ctx, g.AcquirerAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	sc := g.Config().IssuerSim
	pop := issuersim.Population{Seed: sc.Seed, BINs: sc.BINs, PerBIN: sc.PerBIN}
	for i := 0; i < 3; i++ {
		c := pop.Card(300 + i)
		changePIN(t, client, loadgen.Op{Acquirer: gateway.DevATMAcquirer, Terminal: fmt.Sprintf("OPS%05d", i), Proc: iso8583.ProcPINChange,
			PAN: c.PAN, OldPIN: c.PIN, NewPIN: "4826", Format: pinblock.Format0, KeyID: devkeys.ATMZPK})
	}
	if _, err := g.Reload("test"); err != nil {
		t.Fatal(err)
	}
	scraped := metricNames(t, g.HTTPAddr())
	for _, must := range []string{"pingate_requests_total", "pingate_request_duration_seconds_bucket", "pingate_config_reloads_total",
		"pingate_issuer_links_up", "pingate_key_created_timestamp_seconds"} {
		if !scraped[must] {
			t.Errorf("/metrics has no %s after requests and a reload", must)
		}
	}
	known := sourceMetricNames(t)
	for n := range scraped {
		known[n] = true
	}

	used := map[string][]string{} // metric → where
	series := regexp.MustCompile(`\bpingate_[a-z0-9_]+`)
	var rules struct {
		Groups []struct {
			Name  string `yaml:"name"`
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Expr        string            `yaml:"expr"`
				For         string            `yaml:"for"`
				Labels      map[string]string `yaml:"labels"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	decodeYAML(t, opsPath("deploy/prometheus/pingate-alerts.yaml"), &rules)
	if len(rules.Groups) == 0 {
		t.Fatal("pingate-alerts.yaml: no groups")
	}
	anchors := operationsAnchors(t)
	n := 0
	for _, gr := range rules.Groups {
		for _, r := range gr.Rules {
			n++
			if r.Alert == "" || r.Expr == "" {
				t.Errorf("group %s: a rule without alert or expr", gr.Name)
			}
			if s := r.Labels["severity"]; s != "page" && s != "ticket" {
				t.Errorf("alert %s: severity %q, want page or ticket", r.Alert, s)
			}
			if r.Annotations["summary"] == "" {
				t.Errorf("alert %s: no summary", r.Alert)
			}
			rb := r.Annotations["runbook_url"]
			_, anchor, _ := strings.Cut(rb, "#")
			if !strings.Contains(rb, "docs/operations.md#") || !anchors[anchor] {
				t.Errorf("alert %s: runbook_url %q names no heading of docs/operations.md", r.Alert, rb)
			}
			if r.For != "" {
				if _, err := time.ParseDuration(r.For); err != nil {
					t.Errorf("alert %s: for %q: %v", r.Alert, r.For, err)
				}
			}
			for _, m := range series.FindAllString(r.Expr, -1) {
				used[m] = append(used[m], "alert "+r.Alert)
			}
		}
	}
	if n < 8 {
		t.Errorf("%d alert rules; want the runbook's cases covered", n)
	}

	raw, err := os.ReadFile(opsPath("deploy/grafana/pingate-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("pingate-dashboard.json: %v", err)
	}
	if len(dash.Panels) < 6 {
		t.Errorf("dashboard: %d panels", len(dash.Panels))
	}
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			for _, m := range series.FindAllString(tg.Expr, -1) {
				used[m] = append(used[m], "panel "+p.Title)
			}
		}
	}
	var missing []string
	for m, where := range used {
		if !known[m] {
			missing = append(missing, fmt.Sprintf("%s (%s)", m, strings.Join(where, ", ")))
		}
	}
	sort.Strings(missing)
	for _, m := range missing {
		t.Errorf("metric not exported by pingate: %s", m)
	}
}

// operationsAnchors returns the GitHub anchors of docs/operations.md's headings.
func operationsAnchors(t *testing.T) map[string]bool {
	t.Helper()
	raw, err := os.ReadFile(opsPath("docs/operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	drop := regexp.MustCompile(`[^a-z0-9 _-]`)
	for _, l := range strings.Split(string(raw), "\n") {
		if !strings.HasPrefix(l, "#") {
			continue
		}
		h := strings.ToLower(strings.TrimSpace(strings.TrimLeft(l, "#")))
		out[strings.ReplaceAll(drop.ReplaceAllString(h, ""), " ", "-")] = true
	}
	return out
}

// configKeys walks the YAML keys of Config: dotted paths, "[]." for the
// elements of a list, inline structs flattened. It returns each leaf key
// with the value it has in v (the zero Value where v has no element).
func configKeys(prefix string, v reflect.Value, out map[string]reflect.Value) {
	for v.Kind() == reflect.Pointer {
		if v.IsNil() {
			v = reflect.Zero(v.Type().Elem())
		} else {
			v = v.Elem()
		}
	}
	ty := v.Type()
	for i := 0; i < ty.NumField(); i++ {
		f := ty.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		fv := v.Field(i)
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		switch {
		case opts == "inline":
			configKeys(prefix, fv, out)
		case name == "" || name == "-":
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			configKeys(prefix+name+"[].", reflect.Zero(ft.Elem()), out)
		case ft.Kind() == reflect.Struct && ft != reflect.TypeOf(time.Time{}):
			configKeys(prefix+name+".", fv, out)
		default:
			out[prefix+name] = fv
		}
	}
}

// TestConfigurationDocIsTrue: docs/configuration.md has a row for every key
// of gateway.Config and no row for a key that does not exist, and where
// gateway.Config.withDefaults (or the limiter's defaults) fills a value, the row's
// default column shows it.
func TestConfigurationDocIsTrue(t *testing.T) {
	raw, err := os.ReadFile(opsPath("docs/configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{} // key → default column
	for _, l := range strings.Split(string(raw), "\n") {
		cells := strings.Split(l, "|")
		if len(cells) < 4 || !strings.HasPrefix(strings.TrimSpace(cells[1]), "`") {
			continue
		}
		rows[strings.Trim(strings.TrimSpace(cells[1]), "`")] = cells[2]
	}
	def := gateway.Config{}.WithDefaults()
	def.Limits.Config = def.Limits.Config.WithDefaults()
	keys := map[string]reflect.Value{}
	configKeys("", reflect.ValueOf(def), keys)
	if len(keys) < 50 {
		t.Fatalf("found only %d config keys", len(keys))
	}
	short := func(d time.Duration) string {
		s := d.String()
		for _, z := range []string{"m0s", "h0m"} {
			if strings.HasSuffix(s, z) {
				s = strings.TrimSuffix(s, z[1:])
			}
		}
		return s
	}
	for k, v := range keys {
		col, ok := rows[k]
		if !ok {
			t.Errorf("docs/configuration.md: no row for %s", k)
			continue
		}
		var want string
		switch x := v.Interface().(type) {
		case time.Duration:
			if x != 0 {
				want = short(x)
			}
		case string:
			want = x
		case int, float64:
			if !v.IsZero() {
				want = fmt.Sprint(x)
			}
		}
		if want != "" && !strings.Contains(col, "`"+want+"`") {
			t.Errorf("docs/configuration.md: %s default %q, the code's is %s", k, strings.TrimSpace(col), want)
		}
	}
	for k := range rows {
		if _, ok := keys[k]; !ok {
			t.Errorf("docs/configuration.md: row for %s, which is no config key", k)
		}
	}
}

// TestRateLimitsConfigExample: the configuration example of
// docs/rate-limits.md loads with the strict loader, selects the Redis
// backend (a copy without backend: redis would run the per-instance memory
// limits and ignore its Redis), and every limit it shows is the code's
// default, as the page says.
func TestRateLimitsConfigExample(t *testing.T) {
	raw, err := os.ReadFile(opsPath("docs/rate-limits.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(raw), "\n## Configuration\n")
	if !ok {
		t.Fatal("docs/rate-limits.md: no Configuration section")
	}
	_, block, ok := strings.Cut(section, "```yaml\n")
	if block, _, ok = strings.Cut(block, "```"); !ok {
		t.Fatal("docs/rate-limits.md: no yaml block in Configuration")
	}
	path := filepath.Join(t.TempDir(), "limits.yaml")
	if err := os.WriteFile(path, []byte(block), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := gateway.LoadConfig(path)
	if err != nil {
		t.Fatalf("the example does not load: %v", err)
	}
	if cfg.Limits.Backend != "redis" {
		t.Errorf("the example's limits.backend = %q, want redis: its Redis settings would be ignored", cfg.Limits.Backend)
	}
	if err := cfg.Limits.Config.Validate(); err != nil {
		t.Errorf("the example does not validate: %v", err)
	}
	want := cfg.Limits.Config
	want.Addrs, want.Username, want.PasswordEnv = nil, "", ""
	if def := (redislimit.Config{}).WithDefaults(); !reflect.DeepEqual(want, def) {
		t.Errorf("the example's values %+v, the defaults %+v", want, def)
	}
}
