# The landlord catalog: one shared schema in the platform database.
# Applied by `tenantctl db init` (or `tenantctl schema apply --landlord`), or
# by a DBA with `atlas schema apply --env landlord`. Extensions (ltree,
# btree_gin) and grants to the application role are idempotent SQL that the
# applier runs around this file: open-source Atlas cannot express them.
# A changed CHECK expression is not detected by Atlas: rename the check (_v2).

schema "landlord" {
}

# Tenancy: one row per tenant, with its placement.
table "tenants" {
  schema = schema.landlord
  column "id" {
    type    = uuid
    default = sql("gen_random_uuid()")
  }
  column "slug" {
    type = text
  }
  column "name" {
    type = text
  }
  column "status" {
    type    = text
    default = "provisioning"
  }
  column "placement" {
    type    = text
    default = "schema"
  }
  column "cluster" {
    type    = text
    default = "main"
  }
  column "database_name" {
    type = text
  }
  column "schema_name" {
    type = text
  }
  # Digest of the desired tenant schema last applied (core + installed modules).
  column "schema_hash" {
    type = text
    null = true
  }
  # Catalog fingerprint of the tenant schema right after that apply: the fleet
  # runner skips a tenant whose hash and live fingerprint both still match.
  column "schema_fingerprint" {
    type = text
    null = true
  }
  # Catalog stamp (schemaapply.Stamps: the transaction ids of the schema's
  # catalog rows) taken when the live fingerprint was last found equal to
  # schema_fingerprint: while the live stamp is the same, nothing in the
  # schema changed and the fleet runner trusts the fingerprint without
  # computing it. Cleared whenever the fingerprint or the placement changes.
  column "schema_stamp" {
    type = text
    null = true
  }
  # When the tenant schema was last applied, and the error of the last failed
  # apply (NULL once an apply succeeds).
  column "schema_applied_at" {
    type = timestamptz
    null = true
  }
  column "schema_error" {
    type = text
    null = true
  }
  # Per-tenant statement_timeout; NULL means the configured default.
  column "statement_timeout_ms" {
    type = integer
    null = true
  }
  # Per-tenant cap on concurrent API requests (per server process); NULL
  # means the configured default (tenant.max_concurrent_requests).
  column "max_concurrent_requests" {
    type = integer
    null = true
  }
  # Bumped on every placement or status change; servers re-resolve on change.
  column "version" {
    type    = bigint
    default = 1
  }
  column "created_at" {
    type    = timestamptz
    default = sql("now()")
  }
  column "updated_at" {
    type    = timestamptz
    default = sql("now()")
  }
  column "deleted_at" {
    type = timestamptz
    null = true
  }
  primary_key {
    columns = [column.id]
  }
  index "tenants_slug_key" {
    unique  = true
    columns = [column.slug]
  }
  check "tenants_status_check" {
    expr = "status IN ('provisioning', 'active', 'suspended', 'moving', 'deleted')"
  }
  check "tenants_placement_check" {
    expr = "placement IN ('schema', 'database')"
  }
  check "tenants_timeout_check" {
    expr = "statement_timeout_ms IS NULL OR statement_timeout_ms > 0"
  }
  # The bounds the platform API enforces (tenant.Limits.Validate).
  check "tenants_limits_check" {
    expr = "(statement_timeout_ms IS NULL OR statement_timeout_ms <= 600000) AND (max_concurrent_requests IS NULL OR max_concurrent_requests BETWEEN 1 AND 10000)"
  }
  # The names purge drops are the tenant's own: a slug as tenant.ParseSlug
  # makes them, schema tenant_<slug>, and a dedicated database tenant_<slug>
  # (a schema-placed tenant's database is its cluster's shared one, which
  # purge never drops: checked in Go, internal/provision).
  check "tenants_slug_check" {
    expr = "slug ~ '^[a-z][a-z0-9_]{0,55}$'"
  }
  check "tenants_names_check" {
    expr = "schema_name = 'tenant_' || slug AND (placement = 'schema' OR database_name = 'tenant_' || slug)"
  }
}

# ModuleRegistry: the catalog of installable modules.
table "modules" {
  schema = schema.landlord
  column "name" {
    type = text
  }
  column "display_name" {
    type = text
  }
  column "version" {
    type = text
  }
  column "description" {
    type    = text
    default = ""
  }
  # Tenant HCL files (under schema/tenant/) that the module adds to a tenant schema.
  column "schema_files" {
    type    = sql("text[]")
    default = sql("'{}'::text[]")
  }
  column "created_at" {
    type    = timestamptz
    default = sql("now()")
  }
  primary_key {
    columns = [column.name]
  }
  check "modules_name_check" {
    expr = "name ~ '^[a-z][a-z0-9_]{0,62}$'"
  }
}

# Which tenant installed which module. The router's tenant lookup reads the
# installed ones with the tenant's row (catalog.Resolve): a module's routes
# answer 404 module_not_installed before any query of the tenant's schema.
table "tenant_modules" {
  schema = schema.landlord
  column "tenant_id" {
    type = uuid
  }
  column "module_name" {
    type = text
  }
  column "status" {
    type    = text
    default = "installed"
  }
  column "installed_at" {
    type    = timestamptz
    default = sql("now()")
  }
  primary_key {
    columns = [column.tenant_id, column.module_name]
  }
  foreign_key "tenant_modules_tenant_fk" {
    columns     = [column.tenant_id]
    ref_columns = [table.tenants.column.id]
    on_delete   = CASCADE
  }
  foreign_key "tenant_modules_module_fk" {
    columns     = [column.module_name]
    ref_columns = [table.modules.column.name]
    on_delete   = RESTRICT
  }
  index "tenant_modules_module_idx" {
    columns = [column.module_name]
  }
  # installed: its routes are live. uninstalling: an uninstall of a tenant in
  # its own database is under way (routes off, tables not yet dropped).
  # removed: a default module the tenant uninstalled (the fleet runner does
  # not install it again).
  check "tenant_modules_status_check_v2" {
    expr = "status IN ('installing', 'installed', 'uninstalling', 'removed')"
  }
}

# Geography: country → province → district → ward …, as an ltree path of ids.
table "geo_administrative_units" {
  schema = schema.landlord
  column "id" {
    type = bigint
    identity {
      generated = BY_DEFAULT
    }
  }
  column "parent_id" {
    type = bigint
    null = true
  }
  column "code" {
    type = text
  }
  column "name" {
    type = text
  }
  column "level" {
    type = text
  }
  column "path" {
    type = sql("ltree")
  }
  column "created_at" {
    type    = timestamptz
    default = sql("now()")
  }
  primary_key {
    columns = [column.id]
  }
  foreign_key "geo_units_parent_fk" {
    columns     = [column.parent_id]
    ref_columns = [table.geo_administrative_units.column.id]
    on_delete   = RESTRICT
  }
  index "geo_units_code_key" {
    unique  = true
    columns = [column.code]
  }
  index "geo_units_parent_idx" {
    columns = [column.parent_id]
  }
  index "geo_units_path_gist" {
    type    = GIST
    columns = [column.path]
  }
}

# Access: API tokens, stored as SHA-256 of the secret.
table "api_tokens" {
  schema = schema.landlord
  column "id" {
    type    = uuid
    default = sql("gen_random_uuid()")
  }
  column "name" {
    type = text
  }
  column "kind" {
    type = text
  }
  column "tenant_id" {
    type = uuid
    null = true
  }
  column "token_hash" {
    type = bytea
  }
  # The first characters of the token, to recognise it in listings.
  column "prefix" {
    type = text
  }
  column "created_at" {
    type    = timestamptz
    default = sql("now()")
  }
  column "expires_at" {
    type = timestamptz
    null = true
  }
  column "revoked_at" {
    type = timestamptz
    null = true
  }
  column "last_used_at" {
    type = timestamptz
    null = true
  }
  primary_key {
    columns = [column.id]
  }
  foreign_key "api_tokens_tenant_fk" {
    columns     = [column.tenant_id]
    ref_columns = [table.tenants.column.id]
    on_delete   = CASCADE
  }
  index "api_tokens_hash_key" {
    unique  = true
    columns = [column.token_hash]
  }
  index "api_tokens_tenant_idx" {
    columns = [column.tenant_id]
  }
  check "api_tokens_kind_check" {
    expr = "(kind = 'platform' AND tenant_id IS NULL) OR (kind = 'tenant' AND tenant_id IS NOT NULL)"
  }
}

# Warm pool: spare tenant schemas built ahead of time (each with its own role
# of the same name), claimed by renaming schema and role to tenant_<slug> in
# the transaction that activates the tenant. A row exists before its schema
# (status building) and until after it is claimed or dropped, so a spare
# schema or role is never an orphan.
table "tenant_spares" {
  schema = schema.landlord
  # Schema and role name, e.g. pd_spare_1a2b3c4d5e.
  column "name" {
    type = text
  }
  column "cluster" {
    type = text
  }
  # Target hash of the desired schema it was built with (core, no modules).
  column "schema_hash" {
    type = text
  }
  # Catalog fingerprint once built (names anonymised, so it survives the
  # rename); copied to landlord.tenants.schema_fingerprint by the claim.
  column "schema_fingerprint" {
    type = text
    null = true
  }
  column "status" {
    type    = text
    default = "building"
  }
  column "created_at" {
    type    = timestamptz
    default = sql("now()")
  }
  primary_key {
    columns = [column.name]
  }
  index "tenant_spares_ready_idx" {
    columns = [column.cluster, column.schema_hash, column.created_at]
    where   = "(status = 'ready'::text)"
  }
  check "tenant_spares_status_check" {
    expr = "status IN ('building', 'ready')"
  }
}

# Online moves between placements (schema ⇄ database, cluster → cluster). One
# row per move records how far it got, so that a rerun after a crash finishes
# it; at most one unfinished move per tenant.
table "tenant_moves" {
  schema = schema.landlord
  column "id" {
    type    = uuid
    default = sql("gen_random_uuid()")
  }
  column "tenant_id" {
    type = uuid
  }
  column "from_placement" {
    type = text
  }
  column "from_cluster" {
    type = text
  }
  column "from_database" {
    type = text
  }
  column "from_schema" {
    type = text
  }
  column "to_placement" {
    type = text
  }
  column "to_cluster" {
    type = text
  }
  column "to_database" {
    type = text
  }
  column "to_schema" {
    type = text
  }
  # How the rows travel (internal/move): "logical" copies under a snapshot and
  # streams the changes made meanwhile, writes wait only for the final switch;
  # "lock" copies with the source's writes blocked throughout.
  column "mode" {
    type    = text
    default = "lock"
  }
  # lock: started → copied → prepared → flipped → done; logical: started →
  # copied → streaming → prepared → flipped → done; either may end failed.
  column "state" {
    type    = text
    default = "started"
  }
  # The name the source schema (and a dedicated source database) gets once retired.
  column "retired_name" {
    type = text
  }
  column "rows_copied" {
    type    = bigint
    default = 0
  }
  # How long writes were blocked (table locks held on the source).
  column "write_pause_ms" {
    type = bigint
    null = true
  }
  # A logical move's replication lag while it streams: how far the target's
  # applied changes trail the source's commits (recorded about once a second).
  column "lag_ms" {
    type = bigint
    null = true
  }
  column "error" {
    type = text
    null = true
  }
  column "started_at" {
    type    = timestamptz
    default = sql("now()")
  }
  column "updated_at" {
    type    = timestamptz
    default = sql("now()")
  }
  column "finished_at" {
    type = timestamptz
    null = true
  }
  primary_key {
    columns = [column.id]
  }
  foreign_key "tenant_moves_tenant_fk" {
    columns     = [column.tenant_id]
    ref_columns = [table.tenants.column.id]
    on_delete   = CASCADE
  }
  index "tenant_moves_one_open_key" {
    unique  = true
    columns = [column.tenant_id]
    where   = "(state <> ALL (ARRAY['done'::text, 'failed'::text]))"
  }
  check "tenant_moves_state_check_v2" {
    expr = "state IN ('started', 'copied', 'streaming', 'prepared', 'flipped', 'done', 'failed')"
  }
  check "tenant_moves_mode_check" {
    expr = "mode IN ('lock', 'logical')"
  }
}

# Copies left behind by moves: renamed and closed to the tenant's role, kept
# until `tenantctl tenant purge-retired` drops them after a grace period.
table "retired_copies" {
  schema = schema.landlord
  column "id" {
    type    = uuid
    default = sql("gen_random_uuid()")
  }
  column "tenant_id" {
    type = uuid
  }
  column "slug" {
    type = text
  }
  column "cluster" {
    type = text
  }
  # The database holding the copy (for a dedicated database: its retired name).
  column "database_name" {
    type = text
  }
  # The retired schema's name.
  column "schema_name" {
    type = text
  }
  # True when the whole database is the copy (a tenant moved out of a dedicated database).
  column "whole_database" {
    type    = boolean
    default = false
  }
  column "retired_at" {
    type    = timestamptz
    default = sql("now()")
  }
  column "purged_at" {
    type = timestamptz
    null = true
  }
  primary_key {
    columns = [column.id]
  }
  # Purge-retired drops these names: a retired schema is pd_retired_<12 hex>;
  # a whole retired database has that name once the move renamed it (its
  # tenant_<slug> name until then, which purge-retired refuses to drop).
  check "retired_copies_names_check" {
    expr = "schema_name ~ '^pd_retired_[0-9a-f]{12}$' AND (NOT whole_database OR database_name IN (schema_name, 'tenant_' || slug))"
  }
  index "retired_copies_pending_idx" {
    columns = [column.retired_at]
    where   = "(purged_at IS NULL)"
  }
}

# Audit trail: one row per platform action (tenant create, suspend, resume,
# rename, delete, purge, move, limit change; module install and uninstall;
# token create and revoke), written in the action's own transaction where it
# has one. Owned by internal/audit. The application role may INSERT and
# SELECT, never UPDATE or DELETE; retention is a DBA's DELETE as the admin.
table "audit_events" {
  schema = schema.landlord
  column "id" {
    type = bigint
    identity {
      generated = ALWAYS
    }
  }
  column "at" {
    type    = timestamptz
    default = sql("now()")
  }
  # Who: "token:<id>" for an API token, "tenantctl:<os user>" for the CLI.
  column "actor" {
    type = text
  }
  column "token_id" {
    type = uuid
    null = true
  }
  # What: <noun>.<verb>, e.g. tenant.suspend.
  column "action" {
    type = text
  }
  # The tenant acted on (no foreign key: the trail outlives a purge).
  column "tenant_id" {
    type = uuid
    null = true
  }
  column "tenant" {
    type = text
    null = true
  }
  # What else the action names: a module, a token id.
  column "target" {
    type    = text
    default = ""
  }
  column "request_id" {
    type = text
    null = true
  }
  column "outcome" {
    type = text
  }
  # The error code of a failed action (internal/apperr), "internal" if none.
  column "error_code" {
    type = text
    null = true
  }
  column "detail" {
    type    = jsonb
    default = sql("'{}'::jsonb")
  }
  primary_key {
    columns = [column.id]
  }
  index "audit_events_tenant_idx" {
    columns = [column.tenant, column.id]
  }
  index "audit_events_action_idx" {
    columns = [column.action, column.id]
  }
  check "audit_events_outcome_check" {
    expr = "(outcome = 'ok' AND error_code IS NULL) OR (outcome = 'error' AND error_code IS NOT NULL)"
  }
  check "audit_events_action_check" {
    expr = "action ~ '^[a-z_]+\\.[a-z_]+$'"
  }
}
