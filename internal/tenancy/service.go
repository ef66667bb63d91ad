package tenancy

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/rs/zerolog"

	"github.com/publicdigit/publicdigit/internal/config"
	"github.com/publicdigit/publicdigit/internal/requestid"
)

// Step names a point in provisioning, purge or the warm pool where a hook is
// called: tests kill the process there to prove that a rerun completes.
type Step string

// The hook points.
const (
	// StepInserted: the catalog row (status provisioning) is committed.
	StepInserted Step = "inserted"
	// StepApplied: the tenant schema and role are built, inside the apply's
	// transaction (before commit) when the catalog shares the tenant's
	// database, else committed with the row still provisioning.
	StepApplied Step = "applied"
	// StepClaiming: inside the warm-pool claim transaction, schema and role
	// renamed, not committed.
	StepClaiming Step = "claiming"
	// StepActivated: the row is active (committed).
	StepActivated Step = "activated"
	// StepSpareInserted: a spare's row (status building) is committed, its schema not built.
	StepSpareInserted Step = "spare-inserted"
	// StepSpareBuilt: a spare's schema is built, inside its apply transaction.
	StepSpareBuilt Step = "spare-built"
	// StepDropped: a purged tenant's schema and role are dropped, inside the
	// purge transaction (before commit).
	StepDropped Step = "dropped"
)

// Options configure a Service.
type Options struct {
	// Config supplies clusters, the default cluster, the application role
	// and the warm pool size.
	Config config.Config
	// Landlord is the landlord catalog pool (the application role through
	// PgBouncer, QueryExecModeExec). Required.
	Landlord *pgxpool.Pool
	// Admin is the direct admin connection to the landlord database (never
	// PgBouncer): tenant operation locks and warm-pool claims. Required.
	Admin *sql.DB
	// Log receives provisioning and warm-pool events.
	Log zerolog.Logger
	// OnChange is called after a tenant's status or placement changed (e.g.
	// pgroute's Router.Invalidate). May be nil.
	OnChange func(Slug)
	// Hook, when set, is called at each Step (fault injection in tests).
	Hook func(Step)
}

// Service is the landlord side of tenants: the catalog, provisioning (cold
// and warm), lifecycle changes and purge. Safe for concurrent use.
type Service struct {
	o   Options
	cfg config.Config
	log zerolog.Logger

	mu        sync.Mutex
	clusters  map[string]*sql.DB // admin connections this Service opened
	databases map[string]string  // cluster → its database name
}

// New checks the options and returns a Service. Close releases the cluster
// connections it opened (not Landlord or Admin).
func New(o Options) (*Service, error) {
	if o.Landlord == nil || o.Admin == nil {
		return nil, errors.New("tenancy: Landlord and Admin are required")
	}
	if _, err := o.Config.Cluster(o.Config.DefaultCluster); err != nil {
		return nil, fmt.Errorf("tenancy: default cluster: %w", err)
	}
	return &Service{
		o:         o,
		cfg:       o.Config,
		log:       o.Log.Hook(requestid.Hook),
		clusters:  map[string]*sql.DB{},
		databases: map[string]string{},
	}, nil
}

// Close closes the cluster admin connections the Service opened.
func (s *Service) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, db := range s.clusters {
		_ = db.Close()
		delete(s.clusters, name)
	}
}

func (s *Service) hook(st Step) {
	if s.o.Hook != nil {
		s.o.Hook(st)
	}
}

// Notify tells the OnChange callback that a tenant's status or placement
// changed (callers that change the catalog outside this Service use it).
func (s *Service) Notify(slug Slug) {
	if s.o.OnChange != nil {
		s.o.OnChange(slug)
	}
}

// Admin is the direct admin connection to the landlord database.
func (s *Service) Admin() *sql.DB { return s.o.Admin }

// Config is the configuration the Service was made with.
func (s *Service) Config() config.Config { return s.cfg }

// ClusterAdmin returns the direct admin connection of a cluster, opening it
// on first use. The landlord's own admin connection is reused when the
// cluster's admin_url is the same.
func (s *Service) ClusterAdmin(name string) (*sql.DB, error) {
	cl, err := s.cfg.Cluster(name)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidTenant, err)
	}
	if cl.AdminURL == s.cfg.Admin.URL {
		return s.o.Admin, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if db, ok := s.clusters[name]; ok {
		return db, nil
	}
	db, err := OpenAdmin(cl.AdminURL, s.cfg.Pool)
	if err != nil {
		return nil, fmt.Errorf("cluster %s admin_url: %w", name, err)
	}
	s.clusters[name] = db
	return db, nil
}

// OpenAdmin opens a direct admin connection pool (database/sql over pgx,
// connecting lazily) sized and recycled like the configured pools. Its
// statements use pgx's exec mode: one round trip each and no statement
// cache, since DDL texts (tenant names) rarely repeat.
func OpenAdmin(url string, p config.Pool) (*sql.DB, error) {
	pc, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("admin connection %s: %w", config.Redact(url), err)
	}
	pc.DefaultQueryExecMode = pgx.QueryExecModeExec
	db := stdlib.OpenDB(*pc)
	db.SetMaxOpenConns(int(max(p.MaxConns, 4)))
	db.SetMaxIdleConns(4)
	db.SetConnMaxIdleTime(p.MaxConnIdleTime)
	db.SetConnMaxLifetime(p.MaxConnLifetime)
	return db, nil
}

// DefaultPlacement is where a new tenant goes unless asked otherwise: schema
// tenant_<slug> in the default cluster's database.
func (s *Service) DefaultPlacement(slug Slug) (Placement, error) {
	return s.SchemaPlacement(slug, s.cfg.DefaultCluster)
}

// SchemaPlacement is schema placement of slug on the named cluster.
func (s *Service) SchemaPlacement(slug Slug, cluster string) (Placement, error) {
	db, err := s.clusterDatabase(cluster)
	if err != nil {
		return Placement{}, err
	}
	return Placement{Kind: PlacementSchema, Cluster: cluster, Database: db, Schema: slug.SchemaName()}, nil
}

// clusterDatabase is the database name of a cluster's shared pool (parsed once).
func (s *Service) clusterDatabase(name string) (string, error) {
	cl, err := s.cfg.Cluster(name)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrInvalidTenant, err)
	}
	s.mu.Lock()
	db, ok := s.databases[name]
	s.mu.Unlock()
	if ok {
		return db, nil
	}
	pc, err := pgx.ParseConfig(cl.AdminURL)
	if err != nil {
		return "", fmt.Errorf("cluster %s admin_url: %w", name, err)
	}
	s.mu.Lock()
	s.databases[name] = pc.Database
	s.mu.Unlock()
	return pc.Database, nil
}

// Lock takes the tenant's operation lock on the landlord database and
// holds it until the returned function is called. Every operation that
// creates or drops a tenant's schema or role (provision, module install and
// uninstall, purge, moves) holds it, so that none of them can recreate what
// another just dropped. A crashed holder's lock dies with its connection.
func (s *Service) Lock(ctx context.Context, slug Slug) (func(), error) {
	tx, err := s.o.Admin.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("lock tenant %s: %w", slug, err)
	}
	if err := LockTx(ctx, tx, slug); err != nil {
		_ = tx.Rollback()
		return nil, err
	}
	return func() { _ = tx.Rollback() }, nil
}

// WithTenantLock runs fn while holding the tenant's operation lock, with the
// tenant as the catalog has it once the lock is held. Module installs use it.
func (s *Service) WithTenantLock(ctx context.Context, slug Slug, fn func(ctx context.Context, t Tenant) error) error {
	unlock, err := s.Lock(ctx, slug)
	if err != nil {
		return err
	}
	defer unlock()
	t, err := s.Get(ctx, slug)
	if err != nil {
		return err
	}
	return fn(ctx, t)
}
