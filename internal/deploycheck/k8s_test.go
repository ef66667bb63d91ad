package deploycheck_test

import (
	"bytes"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"

	"github.com/publicdigit/publicdigit/internal/deploycheck"
)

// manifests are the objects of deploy/k8s, strictly decoded into the
// Kubernetes API types: a misspelt or misplaced field fails.
type manifests struct {
	deployments []appsv1.Deployment
	jobs        []batchv1.Job
	services    []corev1.Service
	configMaps  map[string]corev1.ConfigMap
	secrets     map[string]corev1.Secret
	pdbs        []policyv1.PodDisruptionBudget
}

type typeMeta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
}

// splitYAML splits a multi-document YAML file on its --- lines.
func splitYAML(raw []byte) [][]byte {
	var docs [][]byte
	for _, d := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(raw), -1) {
		if strings.TrimSpace(d) != "" {
			docs = append(docs, []byte(d))
		}
	}
	return docs
}

func loadManifests(t *testing.T) manifests {
	t.Helper()
	m := manifests{configMaps: map[string]corev1.ConfigMap{}, secrets: map[string]corev1.Secret{}}
	files, err := filepath.Glob(deploycheck.Path("deploy", "k8s", "*.yaml"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	want := map[string]string{
		"Deployment": "apps/v1", "Job": "batch/v1", "Service": "v1", "ConfigMap": "v1", "Secret": "v1",
		"PodDisruptionBudget": "policy/v1", "Kustomization": "kustomize.config.k8s.io/v1beta1",
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		require.NoError(t, err)
		for i, doc := range splitYAML(raw) {
			where := filepath.Base(f) + " #" + strconv.Itoa(i+1)
			var tm typeMeta
			require.NoError(t, yaml.Unmarshal(doc, &tm), where)
			require.Contains(t, want, tm.Kind, "%s: kind %q", where, tm.Kind)
			assert.Equal(t, want[tm.Kind], tm.APIVersion, "%s: apiVersion of %s", where, tm.Kind)
			strict := func(v any) { require.NoError(t, yaml.UnmarshalStrict(doc, v), where) }
			switch tm.Kind {
			case "Deployment":
				var d appsv1.Deployment
				strict(&d)
				m.deployments = append(m.deployments, d)
			case "Job":
				var j batchv1.Job
				strict(&j)
				m.jobs = append(m.jobs, j)
			case "Service":
				var s corev1.Service
				strict(&s)
				m.services = append(m.services, s)
			case "ConfigMap":
				var c corev1.ConfigMap
				strict(&c)
				m.configMaps[c.Name] = c
			case "Secret":
				var s corev1.Secret
				strict(&s)
				m.secrets[s.Name] = s
			case "PodDisruptionBudget":
				var p policyv1.PodDisruptionBudget
				strict(&p)
				m.pdbs = append(m.pdbs, p)
			case "Kustomization":
				var k struct {
					typeMeta
					Labels    []any    `json:"labels"`
					Resources []string `json:"resources"`
					Images    []struct {
						Name, NewName, NewTag string
					} `json:"images"`
				}
				strict(&k)
				for _, r := range k.Resources {
					_, err := os.Stat(filepath.Join(filepath.Dir(f), r))
					assert.NoError(t, err, "kustomization resource %s", r)
				}
				assert.NotContains(t, k.Resources, "secret.example.yaml", "placeholder secrets are never applied")
			}
		}
	}
	return m
}

func subset(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return len(sel) > 0
}

// deploy/k8s: every manifest decodes strictly into its API type; selectors
// select their pods; the server's probes are /readyz and /healthz on its
// listen port, its /metrics on a port of its own that Prometheus scrapes
// and no Service exposes; every command of the image's programs and every flag is one
// the binaries take; every PD_ variable is a configuration key and, with the
// ConfigMap and the example Secret, makes a valid configuration; every
// ConfigMap and Secret key referenced exists; the PgBouncer ConfigMap carries
// the production file unchanged and loads in a real PgBouncer.
func TestKubernetesManifests(t *testing.T) {
	m := loadManifests(t)
	require.Len(t, m.deployments, 2)
	require.Len(t, m.jobs, 1)

	var pods []corev1.PodTemplateSpec
	for _, d := range m.deployments {
		assert.True(t, subset(d.Spec.Selector.MatchLabels, d.Spec.Template.Labels), "deployment %s selects its pods", d.Name)
		pods = append(pods, d.Spec.Template)
	}
	pods = append(pods, m.jobs[0].Spec.Template)
	for _, s := range m.services {
		n := 0
		for _, d := range m.deployments {
			if subset(s.Spec.Selector, d.Spec.Template.Labels) {
				n++
				for _, p := range s.Spec.Ports {
					assert.True(t, hasPort(d.Spec.Template.Spec, p.TargetPort.String()), "service %s targets port %s of %s", s.Name, p.TargetPort.String(), d.Name)
				}
			}
		}
		assert.Equal(t, 1, n, "service %s selects one deployment", s.Name)
	}
	for _, p := range m.pdbs {
		n := 0
		for _, d := range m.deployments {
			if subset(p.Spec.Selector.MatchLabels, d.Spec.Template.Labels) {
				n++
				assert.Greater(t, *d.Spec.Replicas, int32(1), "pdb %s guards a deployment of several replicas", p.Name)
			}
		}
		assert.Equal(t, 1, n, "pdb %s selects one deployment", p.Name)
	}

	ours := 0
	for _, pod := range pods {
		for _, c := range append(append([]corev1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...) {
			where := "deploy/k8s " + c.Name
			for _, v := range pod.Spec.Volumes {
				if v.ConfigMap != nil {
					assert.Contains(t, m.configMaps, v.ConfigMap.Name, "%s: volume %s", where, v.Name)
				}
				if v.Secret != nil {
					assert.Contains(t, m.secrets, v.Secret.SecretName, "%s: volume %s", where, v.Name)
				}
			}
			if c.Image != "publicdigit" {
				continue
			}
			ours++
			argv := append(append([]string{}, c.Command...), c.Args...)
			checkCommand(t, where, argv)
			env := map[string]string{}
			for _, ef := range c.EnvFrom {
				require.NotNil(t, ef.ConfigMapRef, where)
				cm, ok := m.configMaps[ef.ConfigMapRef.Name]
				require.True(t, ok, "%s: ConfigMap %s", where, ef.ConfigMapRef.Name)
				for k, v := range cm.Data {
					env[k] = v
				}
			}
			for _, e := range c.Env {
				switch {
				case e.ValueFrom == nil:
					env[e.Name] = e.Value
				case e.ValueFrom.SecretKeyRef != nil:
					ref := e.ValueFrom.SecretKeyRef
					s, ok := m.secrets[ref.Name]
					require.True(t, ok, "%s: Secret %s (secret.example.yaml)", where, ref.Name)
					v, ok := s.StringData[ref.Key]
					require.True(t, ok, "%s: Secret %s has no key %s", where, ref.Name, ref.Key)
					env[e.Name] = v
				default:
					t.Errorf("%s: %s comes from neither a value nor a Secret", where, e.Name)
				}
			}
			cfg := checkEnv(t, where, env)
			if filepath.Base(c.Command[0]) != "publicdigit" {
				continue
			}
			// The server: probes on its listen port, the right paths; /metrics
			// on its own port, scraped there, exposed by no Service.
			_, port, err := net.SplitHostPort(cfg.HTTP.Addr)
			require.NoError(t, err)
			ports := map[string]string{}
			for _, p := range c.Ports {
				ports[p.Name] = itoa(p.ContainerPort)
			}
			assert.Equal(t, port, ports["http"], "%s listens where the http container port is", where)
			require.NotEmpty(t, cfg.HTTP.MetricsAddr, "%s serves /metrics apart from the API (http.metrics_addr)", where)
			_, mport, err := net.SplitHostPort(cfg.HTTP.MetricsAddr)
			require.NoError(t, err)
			assert.Equal(t, map[string]string{"http": port, "metrics": mport}, ports, "%s: the container ports", where)
			assert.Equal(t, mport, pod.Annotations["prometheus.io/port"], "%s: Prometheus scrapes the metrics port", where)
			assert.Equal(t, "/metrics", pod.Annotations["prometheus.io/path"], where)
			for _, s := range m.services {
				for _, p := range s.Spec.Ports {
					assert.NotContains(t, []string{"metrics", mport}, p.TargetPort.String(), "service %s does not expose /metrics", s.Name)
				}
			}
			require.NotNil(t, c.ReadinessProbe, where)
			require.NotNil(t, c.LivenessProbe, where)
			assert.Equal(t, "/readyz", c.ReadinessProbe.HTTPGet.Path)
			assert.Equal(t, "/healthz", c.LivenessProbe.HTTPGet.Path)
			for _, p := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe} {
				assert.Equal(t, "http", p.HTTPGet.Port.String(), "%s: probes use the http port", where)
			}
			grace := *pod.Spec.TerminationGracePeriodSeconds
			assert.Greater(t, float64(grace), cfg.HTTP.ShutdownTimeout.Seconds()+float64(c.Lifecycle.PreStop.Sleep.Seconds),
				"%s: the grace period covers preStop and http.shutdown_timeout", where)
		}
	}
	assert.Equal(t, 3, ours, "server, db-init and schema-apply run the image")
	job := m.jobs[0].Spec.Template.Spec
	assert.Equal(t, []string{"/usr/local/bin/tenantctl", "db", "init"}, job.InitContainers[0].Command)
	assert.Equal(t, []string{"/usr/local/bin/tenantctl", "schema", "apply", "--all"}, job.Containers[0].Command[:4])

	// PgBouncer: the production file is carried as is, and loads.
	pgb, ok := m.configMaps["pgbouncer-config"]
	require.True(t, ok)
	prod, err := os.ReadFile(deploycheck.Path("pgbouncer", "pgbouncer-production.ini"))
	require.NoError(t, err)
	assert.Equal(t, strings.TrimRight(string(prod), "\n"), strings.TrimRight(pgb.Data["pgbouncer-production.ini"], "\n"),
		"deploy/k8s/pgbouncer.yaml carries pgbouncer/pgbouncer-production.ini unchanged")
	assert.Contains(t, pgb.Data["pgbouncer.ini"], "%include /etc/pgbouncer/pgbouncer-production.ini")
	b := runBouncer(t, pgb.Data["pgbouncer.ini"], newerKeys)
	require.True(t, b.ready(t), "PgBouncer refused the ConfigMap's pgbouncer.ini:\n%s", b.log.String())
	userlist := m.secrets["pgbouncer-auth"].StringData["userlist.txt"]
	assert.Contains(t, userlist, `"pgbouncer_auth"`, "the auth_file has the auth_user")
	assert.True(t, bytes.Contains(prod, []byte("auth_user = pgbouncer_auth")))
}

func hasPort(spec corev1.PodSpec, port string) bool {
	for _, c := range spec.Containers {
		for _, p := range c.Ports {
			if p.Name == port || itoa(p.ContainerPort) == port {
				return true
			}
		}
	}
	return false
}

func itoa(n int32) string { return strconv.Itoa(int(n)) }

// The strict decoding is not vacuous: a misspelt field fails.
func TestKubernetesStrictDecodingCatchesTypos(t *testing.T) {
	t.Parallel()
	doc := []byte("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  template:\n    spec:\n      containers:\n        - name: a\n          readinesProbe: {httpGet: {path: /readyz, port: 8080}}\n")
	var d appsv1.Deployment
	assert.Error(t, yaml.UnmarshalStrict(doc, &d))
	assert.NoError(t, yaml.UnmarshalStrict(bytes.Replace(doc, []byte("readinesProbe"), []byte("readinessProbe"), 1), &d))
}
