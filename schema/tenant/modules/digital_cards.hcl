# Module "digital_cards": cards issued to members, with a server-generated QR
# code, a state machine and the append-only log of every change. Installed by
# default for every new tenant (and, by the fleet runner, for every tenant
# created before cards became a module: the tables are the ones core.hcl used
# to hold, unchanged, so that install runs no statement on such a tenant).
# Added to the tenant schema declared in ../core.hcl (schema.tenant, the
# "tenant" variable); same rules: tenant_id on every table, text + CHECK
# instead of enum types, foreign keys only inside the tenant schema.

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
