package httpapi

import (
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/publicdigit/publicdigit/internal/limits"
)

// Metrics holds the Prometheus registry served on /metrics: HTTP requests
// and latency by route pattern and status, pool statistics, provisioning
// durations by path and result, and the Go runtime. Labels are bounded: the
// route is the pattern (/api/v1/platform/tenants/:slug), never a tenant.
type Metrics struct {
	// Registry is where collectors go; add your own with MustRegister.
	Registry *prometheus.Registry

	requests  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	provision *prometheus.HistogramVec

	// byRoute holds each route's and status's request counter and latency
	// observer (routeKey → *routeMetrics): a request then costs no label
	// lookup. Bounded by routes × status codes.
	byRoute sync.Map
}

type routeKey struct {
	route  *fiber.Route // nil: unmatched
	status int
}

type routeMetrics struct {
	requests prometheus.Counter
	latency  prometheus.Observer
}

// forRoute returns the metrics of a route (nil or a USE middleware: unmatched) and status.
func (m *Metrics) forRoute(r *fiber.Route, status int) *routeMetrics {
	if r != nil && r.Method == "USE" {
		r = nil
	}
	k := routeKey{route: r, status: status}
	if rm, ok := m.byRoute.Load(k); ok {
		return rm.(*routeMetrics)
	}
	// Label values are kept by the registry: never pass Fiber's reused
	// buffers (c.Method() is one); route patterns are the app's own strings.
	route, method := "unmatched", "other"
	if r != nil {
		route, method = r.Path, r.Method
	}
	code := strconv.Itoa(status)
	rm, _ := m.byRoute.LoadOrStore(k, &routeMetrics{
		requests: m.requests.WithLabelValues(method, route, code),
		latency:  m.latency.WithLabelValues(method, route, code),
	})
	return rm.(*routeMetrics)
}

// NewMetrics returns a fresh registry with the HTTP, provisioning and Go collectors.
func NewMetrics() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "publicdigit_http_requests_total",
			Help: "HTTP requests by method, route pattern and status.",
		}, []string{"method", "route", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "publicdigit_http_request_duration_seconds",
			Help:    "HTTP request latency by method, route pattern and status.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"method", "route", "status"}),
		provision: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "publicdigit_tenant_provision_duration_seconds",
			Help:    "Tenant provisioning duration by path (cold: schema apply, warm: spare claimed) and result.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"path", "result"}),
	}
	m.Registry.MustRegister(m.requests, m.latency, m.provision,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// ObserveProvision records one provisioning (plug into provision.Options.OnProvision).
func (m *Metrics) ObserveProvision(path string, d time.Duration, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.provision.WithLabelValues(path, result).Observe(d.Seconds())
}

// AddPool exports a pgx pool's statistics under the given pool label.
func (m *Metrics) AddPool(name string, p *pgxpool.Pool) {
	m.Registry.MustRegister(&poolCollector{name: name, stat: p.Stat})
}

// AddGauge exports a value read at each scrape (e.g. the warm pool's ready spares).
func (m *Metrics) AddGauge(name, help string, read func() float64) {
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, read))
}

// AddCounter exports a counter read at each scrape (e.g. the router's tenant lookups).
func (m *Metrics) AddCounter(name, help string, read func() float64) {
	m.Registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, read))
}

func (m *Metrics) middleware() fiber.Handler {
	return func(c *fiber.Ctx) error {
		start := time.Now()
		err := c.Next() // the access log below has already answered any error
		rm := m.forRoute(c.Route(), c.Response().StatusCode())
		rm.requests.Inc()
		rm.latency.Observe(time.Since(start).Seconds())
		return err
	}
}

func (m *Metrics) handler() fiber.Handler {
	return adaptor.HTTPHandler(m.Handler())
}

// Handler serves the registry in the Prometheus text format (net/http), for
// a listener of its own (http.metrics_addr).
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{})
}

var (
	poolConns = prometheus.NewDesc("publicdigit_pool_connections",
		"Connections of a pgx pool by state (acquired, idle, constructing).", []string{"pool", "state"}, nil)
	poolMax = prometheus.NewDesc("publicdigit_pool_max_connections",
		"Maximum size of a pgx pool.", []string{"pool"}, nil)
	poolAcquires = prometheus.NewDesc("publicdigit_pool_acquires_total",
		"Connections acquired from a pgx pool.", []string{"pool"}, nil)
	poolEmptyAcquires = prometheus.NewDesc("publicdigit_pool_empty_acquires_total",
		"Acquires that had to wait for a connection.", []string{"pool"}, nil)
	poolAcquireWait = prometheus.NewDesc("publicdigit_pool_acquire_wait_seconds_total",
		"Time spent waiting for connections from a pgx pool.", []string{"pool"}, nil)
)

type poolCollector struct {
	name string
	stat func() *pgxpool.Stat
}

func (pc *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- poolConns
	ch <- poolMax
	ch <- poolAcquires
	ch <- poolEmptyAcquires
	ch <- poolAcquireWait
}

func (pc *poolCollector) Collect(ch chan<- prometheus.Metric) {
	s := pc.stat()
	ch <- prometheus.MustNewConstMetric(poolConns, prometheus.GaugeValue, float64(s.AcquiredConns()), pc.name, "acquired")
	ch <- prometheus.MustNewConstMetric(poolConns, prometheus.GaugeValue, float64(s.IdleConns()), pc.name, "idle")
	ch <- prometheus.MustNewConstMetric(poolConns, prometheus.GaugeValue, float64(s.ConstructingConns()), pc.name, "constructing")
	ch <- prometheus.MustNewConstMetric(poolMax, prometheus.GaugeValue, float64(s.MaxConns()), pc.name)
	ch <- prometheus.MustNewConstMetric(poolAcquires, prometheus.CounterValue, float64(s.AcquireCount()), pc.name)
	ch <- prometheus.MustNewConstMetric(poolEmptyAcquires, prometheus.CounterValue, float64(s.EmptyAcquireCount()), pc.name)
	ch <- prometheus.MustNewConstMetric(poolAcquireWait, prometheus.CounterValue, s.AcquireDuration().Seconds(), pc.name)
}

// AddLimits exports the tenant limits: the configured defaults, and for each
// tenant with recent requests its effective limits (its own or the
// defaults) and load, plus the totals of waiting and refused requests.
// Tenants appear as a label here only: at most the tenants active in the
// last minutes of this process.
func (m *Metrics) AddLimits(l *limits.Limiter) {
	m.Registry.MustRegister(&limitsCollector{l: l})
}

var (
	limitDefaultConcurrent = prometheus.NewDesc("publicdigit_tenant_limit_default_max_concurrent_requests",
		"Configured cap on one tenant's requests in flight (tenant.max_concurrent_requests).", nil, nil)
	limitDefaultTimeout = prometheus.NewDesc("publicdigit_tenant_limit_default_statement_timeout_seconds",
		"Configured statement timeout of tenant transactions (tenant.statement_timeout).", nil, nil)
	limitConcurrent = prometheus.NewDesc("publicdigit_tenant_limit_max_concurrent_requests",
		"A recently active tenant's cap on requests in flight (its own or the default).", []string{"tenant"}, nil)
	limitTimeout = prometheus.NewDesc("publicdigit_tenant_limit_statement_timeout_seconds",
		"A recently active tenant's statement timeout (its own or the default).", []string{"tenant"}, nil)
	limitInFlight = prometheus.NewDesc("publicdigit_tenant_requests_in_flight",
		"A recently active tenant's requests in flight.", []string{"tenant"}, nil)
	limitWaiting = prometheus.NewDesc("publicdigit_tenant_requests_waiting",
		"A recently active tenant's requests waiting for a slot.", []string{"tenant"}, nil)
	limitLimited = prometheus.NewDesc("publicdigit_tenant_requests_limited",
		"A recently active tenant's requests refused (429) since it was last idle.", []string{"tenant"}, nil)
	limitLimitedTotal = prometheus.NewDesc("publicdigit_tenant_requests_limited_total",
		"Requests refused (429 tenant_limited) over all tenants.", nil, nil)
	limitWaitedTotal = prometheus.NewDesc("publicdigit_tenant_requests_waited_total",
		"Requests that waited for their tenant's slot, over all tenants.", nil, nil)
)

type limitsCollector struct{ l *limits.Limiter }

func (lc *limitsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{limitDefaultConcurrent, limitDefaultTimeout, limitConcurrent, limitTimeout,
		limitInFlight, limitWaiting, limitLimited, limitLimitedTotal, limitWaitedTotal} {
		ch <- d
	}
}

func (lc *limitsCollector) Collect(ch chan<- prometheus.Metric) {
	d := lc.l.Defaults()
	ch <- prometheus.MustNewConstMetric(limitDefaultConcurrent, prometheus.GaugeValue, float64(d.MaxConcurrentRequests))
	ch <- prometheus.MustNewConstMetric(limitDefaultTimeout, prometheus.GaugeValue, d.StatementTimeout.Seconds())
	st := lc.l.Stats()
	for _, t := range st.Tenants {
		ch <- prometheus.MustNewConstMetric(limitConcurrent, prometheus.GaugeValue, float64(t.MaxConcurrent), t.Tenant)
		ch <- prometheus.MustNewConstMetric(limitTimeout, prometheus.GaugeValue, t.StatementTimeout.Seconds(), t.Tenant)
		ch <- prometheus.MustNewConstMetric(limitInFlight, prometheus.GaugeValue, float64(t.InFlight), t.Tenant)
		ch <- prometheus.MustNewConstMetric(limitWaiting, prometheus.GaugeValue, float64(t.Waiting), t.Tenant)
		ch <- prometheus.MustNewConstMetric(limitLimited, prometheus.GaugeValue, float64(t.Limited), t.Tenant)
	}
	ch <- prometheus.MustNewConstMetric(limitLimitedTotal, prometheus.CounterValue, float64(st.Limited))
	ch <- prometheus.MustNewConstMetric(limitWaitedTotal, prometheus.CounterValue, float64(st.Waited))
}
