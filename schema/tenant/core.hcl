# One tenant's schema: identical in every tenant_<slug> schema, so a statement
# planned for one tenant is valid for all. Bind the schema name with the
# "tenant" variable: in-process by tenantctl / the applier, or with the atlas
# CLI as `--var tenant=tenant_<slug>`. Module files (modules/*.hcl) add their
# tables to the same schema.
#
# Rules: every table carries tenant_id and every read checks it; status
# columns are text with a CHECK (no per-tenant enum types); foreign keys stay
# inside the tenant schema; landlord data (geography) is referenced by id
# only. A changed CHECK expression is not detected by Atlas: rename it (_v2).
# No schema-level attributes (the CLI's scoped apply refuses them).

variable "tenant" {
  type = string
}

schema "tenant" {
  name = var.tenant
}

# Membership.
table "members" {
  schema = schema.tenant
  column "id" {
    type    = uuid
    default = sql("gen_random_uuid()")
  }
  column "tenant_id" {
    type = uuid
  }
  column "full_name" {
    type = text
  }
  column "email" {
    type = text
    null = true
  }
  column "phone" {
    type = text
    null = true
  }
  column "status" {
    type    = text
    default = "active"
  }
  # A landlord geo_administrative_units id; validated by the API, no FK across schemas.
  column "geo_unit_id" {
    type = bigint
    null = true
  }
  column "joined_at" {
    type    = timestamptz
    default = sql("now()")
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
  index "members_tenant_status_idx" {
    columns = [column.tenant_id, column.status, column.id]
  }
  index "members_tenant_geo_idx" {
    columns = [column.tenant_id, column.geo_unit_id, column.id]
  }
  index "members_tenant_email_key" {
    unique  = true
    columns = [column.tenant_id, column.email]
    where   = "email IS NOT NULL"
  }
  check "members_status_check" {
    expr = "status IN ('active', 'inactive', 'suspended')"
  }
}

# DigitalCard: one card per issue, with a server-generated QR code.
table "digital_cards" {
  schema = schema.tenant
  column "id" {
    type    = uuid
    default = sql("gen_random_uuid()")
  }
  column "tenant_id" {
    type = uuid
  }
  column "member_id" {
    type = uuid
  }
  column "qr_code" {
    type = text
  }
  column "status" {
    type    = text
    default = "issued"
  }
  column "issued_at" {
    type    = timestamptz
    default = sql("now()")
  }
  column "activated_at" {
    type = timestamptz
    null = true
  }
  column "revoked_at" {
    type = timestamptz
    null = true
  }
  column "expires_at" {
    type = timestamptz
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
  foreign_key "digital_cards_member_fk" {
    columns     = [column.member_id]
    ref_columns = [table.members.column.id]
    on_delete   = RESTRICT
  }
  index "digital_cards_qr_code_key" {
    unique  = true
    columns = [column.qr_code]
  }
  index "digital_cards_tenant_member_idx" {
    columns = [column.tenant_id, column.member_id]
  }
  index "digital_cards_tenant_status_idx" {
    columns = [column.tenant_id, column.status, column.id]
  }
  check "digital_cards_status_check" {
    expr = "status IN ('issued', 'active', 'revoked', 'expired')"
  }
}

# The append-only log of what happened to a card, written in the same
# transaction as the change it records.
table "card_activities" {
  schema = schema.tenant
  column "id" {
    type    = uuid
    default = sql("gen_random_uuid()")
  }
  column "tenant_id" {
    type = uuid
  }
  column "card_id" {
    type = uuid
  }
  column "action" {
    type = text
  }
  column "actor" {
    type = text
    null = true
  }
  column "detail" {
    type    = jsonb
    default = sql("'{}'::jsonb")
  }
  column "created_at" {
    type    = timestamptz
    default = sql("now()")
  }
  primary_key {
    columns = [column.id]
  }
  foreign_key "card_activities_card_fk" {
    columns     = [column.card_id]
    ref_columns = [table.digital_cards.column.id]
    on_delete   = RESTRICT
  }
  index "card_activities_tenant_card_idx" {
    columns = [column.tenant_id, column.card_id, column.created_at, column.id]
  }
  check "card_activities_action_check" {
    expr = "action IN ('issued', 'activated', 'revoked', 'expired', 'validated')"
  }
}
