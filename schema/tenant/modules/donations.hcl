# Module "donations": fundraising campaigns and the donations made to them.
# Added to the tenant schema declared in ../core.hcl (schema.tenant, the
# "tenant" variable). Amounts are integer minor units (cents) with an ISO 4217
# currency code; a donation may come from a member or from an outside donor.

table "donation_campaigns" {
  schema = schema.tenant
  column "id" {
    type    = uuid
    default = sql("gen_random_uuid()")
  }
  column "tenant_id" {
    type = uuid
  }
  column "name" {
    type = text
  }
  column "description" {
    type    = text
    default = ""
  }
  column "goal_cents" {
    type = bigint
    null = true
  }
  column "currency" {
    type    = text
    default = "USD"
  }
  column "status" {
    type    = text
    default = "open"
  }
  column "starts_at" {
    type    = timestamptz
    default = sql("now()")
  }
  column "ends_at" {
    type = timestamptz
    null = true
  }
  column "created_at" {
    type    = timestamptz
    default = sql("now()")
  }
  primary_key {
    columns = [column.id]
  }
  index "donation_campaigns_tenant_status_idx" {
    columns = [column.tenant_id, column.status, column.starts_at]
  }
  check "donation_campaigns_status_check" {
    expr = "status IN ('draft', 'open', 'closed')"
  }
  check "donation_campaigns_goal_check" {
    expr = "goal_cents IS NULL OR goal_cents > 0"
  }
  check "donation_campaigns_currency_check" {
    expr = "currency ~ '^[A-Z]{3}$'"
  }
}

table "donations" {
  schema = schema.tenant
  column "id" {
    type    = uuid
    default = sql("gen_random_uuid()")
  }
  column "tenant_id" {
    type = uuid
  }
  column "campaign_id" {
    type = uuid
    null = true
  }
  # The donating member, when the donor is one.
  column "member_id" {
    type = uuid
    null = true
  }
  column "donor_name" {
    type = text
    null = true
  }
  column "amount_cents" {
    type = bigint
  }
  column "currency" {
    type    = text
    default = "USD"
  }
  column "method" {
    type    = text
    default = "cash"
  }
  column "status" {
    type    = text
    default = "received"
  }
  column "donated_at" {
    type    = timestamptz
    default = sql("now()")
  }
  column "created_at" {
    type    = timestamptz
    default = sql("now()")
  }
  primary_key {
    columns = [column.id]
  }
  foreign_key "donations_campaign_fk" {
    columns     = [column.campaign_id]
    ref_columns = [table.donation_campaigns.column.id]
    on_delete   = RESTRICT
  }
  foreign_key "donations_member_fk" {
    columns     = [column.member_id]
    ref_columns = [table.members.column.id]
    on_delete   = RESTRICT
  }
  index "donations_tenant_donated_idx" {
    columns = [column.tenant_id, column.donated_at, column.id]
  }
  index "donations_tenant_campaign_idx" {
    columns = [column.tenant_id, column.campaign_id, column.donated_at]
  }
  index "donations_tenant_member_idx" {
    columns = [column.tenant_id, column.member_id]
    where   = "member_id IS NOT NULL"
  }
  check "donations_amount_check" {
    expr = "amount_cents > 0"
  }
  check "donations_currency_check" {
    expr = "currency ~ '^[A-Z]{3}$'"
  }
  check "donations_method_check" {
    expr = "method IN ('cash', 'card', 'bank_transfer', 'mobile_money', 'other')"
  }
  check "donations_status_check" {
    expr = "status IN ('pledged', 'received', 'refunded')"
  }
}
