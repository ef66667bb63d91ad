# Module "events": events a tenant organises and its members' registrations.
# Added to the tenant schema declared in ../core.hcl (schema.tenant, the
# "tenant" variable); a tenant's desired schema is core.hcl plus the files of
# the modules it installed (landlord.modules.schema_files).
# Same rules as core.hcl: tenant_id on every table, text + CHECK instead of
# enum types, foreign keys only inside the tenant schema.

table "events" {
  schema = schema.tenant
  column "id" {
    type    = uuid
    default = sql("gen_random_uuid()")
  }
  column "tenant_id" {
    type = uuid
  }
  column "title" {
    type = text
  }
  column "description" {
    type    = text
    default = ""
  }
  column "location" {
    type = text
    null = true
  }
  # A landlord geo_administrative_units id; validated by the API, no FK across schemas.
  column "geo_unit_id" {
    type = bigint
    null = true
  }
  column "starts_at" {
    type = timestamptz
  }
  column "ends_at" {
    type = timestamptz
    null = true
  }
  column "capacity" {
    type = integer
    null = true
  }
  column "status" {
    type    = text
    default = "draft"
  }
  column "created_at" {
    type    = timestamptz
    default = sql("now()")
  }
  column "updated_at" {
    type    = timestamptz
    default = sql("now()")
  }
  primary_key {
    columns = [column.id]
  }
  index "events_tenant_starts_idx" {
    columns = [column.tenant_id, column.starts_at, column.id]
  }
  index "events_tenant_status_idx" {
    columns = [column.tenant_id, column.status, column.starts_at]
  }
  check "events_status_check" {
    expr = "status IN ('draft', 'published', 'cancelled', 'completed')"
  }
  check "events_capacity_check" {
    expr = "capacity IS NULL OR capacity > 0"
  }
  check "events_period_check" {
    expr = "ends_at IS NULL OR ends_at >= starts_at"
  }
}

table "event_registrations" {
  schema = schema.tenant
  column "id" {
    type    = uuid
    default = sql("gen_random_uuid()")
  }
  column "tenant_id" {
    type = uuid
  }
  column "event_id" {
    type = uuid
  }
  column "member_id" {
    type = uuid
  }
  column "status" {
    type    = text
    default = "registered"
  }
  column "registered_at" {
    type    = timestamptz
    default = sql("now()")
  }
  column "checked_in_at" {
    type = timestamptz
    null = true
  }
  primary_key {
    columns = [column.id]
  }
  foreign_key "event_registrations_event_fk" {
    columns     = [column.event_id]
    ref_columns = [table.events.column.id]
    on_delete   = CASCADE
  }
  foreign_key "event_registrations_member_fk" {
    columns     = [column.member_id]
    ref_columns = [table.members.column.id]
    on_delete   = RESTRICT
  }
  index "event_registrations_event_member_key" {
    unique  = true
    columns = [column.tenant_id, column.event_id, column.member_id]
  }
  index "event_registrations_tenant_member_idx" {
    columns = [column.tenant_id, column.member_id]
  }
  check "event_registrations_status_check" {
    expr = "status IN ('registered', 'waitlisted', 'cancelled', 'attended')"
  }
}
