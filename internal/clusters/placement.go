package clusters

import (
	"fmt"

	"github.com/publicdigit/publicdigit/internal/tenant"
)

// DefaultPlacement is where a new tenant goes unless asked otherwise: schema
// tenant_<slug> in the default cluster's shared database.
func (c *Clusters) DefaultPlacement(slug tenant.Slug) (tenant.Placement, error) {
	return c.SchemaPlacement(slug, c.cfg.DefaultCluster)
}

// SchemaPlacement is schema placement of slug on the named cluster.
func (c *Clusters) SchemaPlacement(slug tenant.Slug, cluster string) (tenant.Placement, error) {
	db, err := c.SharedDatabase(cluster)
	if err != nil {
		return tenant.Placement{}, err
	}
	return tenant.Placement{Kind: tenant.PlacementSchema, Cluster: cluster, Database: db, Schema: slug.SchemaName()}, nil
}

// DatabasePlacement is placement in a dedicated database tenant_<slug>
// (holding schema tenant_<slug>) on the named cluster.
func (c *Clusters) DatabasePlacement(slug tenant.Slug, cluster string) (tenant.Placement, error) {
	if _, err := c.cluster(cluster); err != nil {
		return tenant.Placement{}, err
	}
	return tenant.Placement{Kind: tenant.PlacementDatabase, Cluster: cluster, Database: slug.DatabaseName(), Schema: slug.SchemaName()}, nil
}

// PlacementFor is the placement of kind on cluster (the default cluster when empty).
func (c *Clusters) PlacementFor(slug tenant.Slug, kind tenant.PlacementKind, cluster string) (tenant.Placement, error) {
	if cluster == "" {
		cluster = c.cfg.DefaultCluster
	}
	switch kind {
	case tenant.PlacementSchema:
		return c.SchemaPlacement(slug, cluster)
	case tenant.PlacementDatabase:
		return c.DatabasePlacement(slug, cluster)
	}
	return tenant.Placement{}, fmt.Errorf("%w: placement must be %q or %q (got %q)",
		tenant.ErrInvalid, tenant.PlacementSchema, tenant.PlacementDatabase, kind)
}

// CheckPlacement returns the placement for a new tenant: the default one when
// want is nil, else want checked against the config (empty fields filled).
func (c *Clusters) CheckPlacement(slug tenant.Slug, want *tenant.Placement) (tenant.Placement, error) {
	if want == nil {
		return c.DefaultPlacement(slug)
	}
	pl, err := c.PlacementFor(slug, want.Kind, want.Cluster)
	if err != nil {
		return tenant.Placement{}, err
	}
	if (want.Database != "" && want.Database != pl.Database) || (want.Schema != "" && want.Schema != pl.Schema) {
		return tenant.Placement{}, fmt.Errorf("%w: a %s placement on cluster %s is database %s, schema %s",
			tenant.ErrInvalid, pl.Kind, pl.Cluster, pl.Database, pl.Schema)
	}
	return pl, nil
}
