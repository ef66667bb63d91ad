# Module "elections": a tenant's elections, their positions and candidates,
# the roll of who voted, the anonymous ballots, the tallies written when an
# election closes, and the activity log. Requires the module "digital_cards"
# (a voter is an active member holding an active card).
# Added to the tenant schema declared in ../core.hcl (schema.tenant, the
# "tenant" variable); same rules: tenant_id on every table, text + CHECK
# instead of enum types, foreign keys only inside the tenant schema, landlord
# geography referenced by id only.
#
# The secret ballot: election_voters (who voted) and election_ballots (what
# was chosen) are written by the same statement and share nothing: no column
# links them, ballot ids are random (UUID v4, no time inside), neither table
# has a timestamp or a sequence, and closing an election rewrites its ballots
# with fresh ids in random order.

table "elections" {
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
  # draft → open → closed → published.
  column "status" {
    type    = text
    default = "draft"
  }
  # Ballots are accepted while open and opens_at <= now() < closes_at.
  column "opens_at" {
    type = timestamptz
  }
  column "closes_at" {
    type = timestamptz
  }
  # A landlord geo_administrative_units id: only members whose unit lies in
  # its subtree may vote (election_scope_units, fixed when the election opens).
  column "scope_unit_id" {
    type = bigint
    null = true
  }
  # The number of ballots cast, set when the election closes.
  column "ballots" {
    type = integer
    null = true
  }
  column "opened_at" {
    type = timestamptz
    null = true
  }
  column "closed_at" {
    type = timestamptz
    null = true
  }
  column "published_at" {
    type = timestamptz
    null = true
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
  index "elections_tenant_status_idx" {
    columns = [column.tenant_id, column.status, column.id]
  }
  check "elections_status_check" {
    expr = "status IN ('draft', 'open', 'closed', 'published')"
  }
  check "elections_window_check" {
    expr = "closes_at > opens_at"
  }
  check "elections_ballots_check" {
    expr = "ballots IS NULL OR ballots >= 0"
  }
}

table "election_positions" {
  schema = schema.tenant
  column "id" {
    type    = uuid
    default = sql("gen_random_uuid()")
  }
  column "tenant_id" {
    type = uuid
  }
  column "election_id" {
    type = uuid
  }
  column "title" {
    type = text
  }
  column "seats" {
    type = integer
  }
  column "created_at" {
    type    = timestamptz
    default = sql("now()")
  }
  primary_key {
    columns = [column.id]
  }
  foreign_key "election_positions_election_fk" {
    columns     = [column.election_id]
    ref_columns = [table.elections.column.id]
    on_delete   = RESTRICT
  }
  # The target of the candidates' (position, election) key.
  index "election_positions_id_election_key" {
    unique  = true
    columns = [column.id, column.election_id]
  }
  index "election_positions_tenant_election_idx" {
    columns = [column.tenant_id, column.election_id, column.id]
  }
  check "election_positions_seats_check" {
    expr = "seats > 0"
  }
}

table "election_candidates" {
  schema = schema.tenant
  column "id" {
    type    = uuid
    default = sql("gen_random_uuid()")
  }
  column "tenant_id" {
    type = uuid
  }
  column "election_id" {
    type = uuid
  }
  column "position_id" {
    type = uuid
  }
  column "member_id" {
    type = uuid
  }
  column "created_at" {
    type    = timestamptz
    default = sql("now()")
  }
  primary_key {
    columns = [column.id]
  }
  # A candidate's position belongs to the candidate's election.
  foreign_key "election_candidates_position_fk" {
    columns     = [column.position_id, column.election_id]
    ref_columns = [table.election_positions.column.id, table.election_positions.column.election_id]
    on_delete   = CASCADE
  }
  foreign_key "election_candidates_member_fk" {
    columns     = [column.member_id]
    ref_columns = [table.members.column.id]
    on_delete   = RESTRICT
  }
  # A member stands at most once for a position.
  index "election_candidates_position_member_key" {
    unique  = true
    columns = [column.position_id, column.member_id]
  }
  # The target of the choices' (candidate, position, election) key.
  index "election_candidates_id_position_election_key" {
    unique  = true
    columns = [column.id, column.position_id, column.election_id]
  }
  index "election_candidates_tenant_election_idx" {
    columns = [column.tenant_id, column.election_id, column.position_id]
  }
  index "election_candidates_member_idx" {
    columns = [column.member_id]
  }
}

# The geography units of a scoped election: its scope unit and every unit
# below it (the landlord's ltree subtree), copied when the election opens, so
# that a ballot's eligibility is decided in the tenant's own database.
table "election_scope_units" {
  schema = schema.tenant
  column "tenant_id" {
    type = uuid
  }
  column "election_id" {
    type = uuid
  }
  column "geo_unit_id" {
    type = bigint
  }
  primary_key {
    columns = [column.election_id, column.geo_unit_id]
  }
  foreign_key "election_scope_units_election_fk" {
    columns     = [column.election_id]
    ref_columns = [table.elections.column.id]
    on_delete   = CASCADE
  }
}

# The roll: one row per member who voted. Its primary key is what makes a
# ballot count once: a second ballot of the same member finds the row.
table "election_voters" {
  schema = schema.tenant
  column "tenant_id" {
    type = uuid
  }
  column "election_id" {
    type = uuid
  }
  column "member_id" {
    type = uuid
  }
  primary_key {
    columns = [column.election_id, column.member_id]
  }
  foreign_key "election_voters_election_fk" {
    columns     = [column.election_id]
    ref_columns = [table.elections.column.id]
    on_delete   = RESTRICT
  }
  foreign_key "election_voters_member_fk" {
    columns     = [column.member_id]
    ref_columns = [table.members.column.id]
    on_delete   = RESTRICT
  }
  index "election_voters_member_idx" {
    columns = [column.member_id]
  }
}

# One anonymous ballot: a random id, its election and the candidates it
# chose — nothing else. The ballot's statement writes only candidates of
# their position in this election, at most the position's seats; a ballot
# without a choice is a blank vote.
table "election_ballots" {
  schema = schema.tenant
  column "id" {
    type    = uuid
    default = sql("gen_random_uuid()")
  }
  column "tenant_id" {
    type = uuid
  }
  column "election_id" {
    type = uuid
  }
  column "choices" {
    type    = sql("uuid[]")
    default = sql("'{}'::uuid[]")
  }
  # Set on every ballot by the closing transaction, which rewrites them all.
  column "sealed" {
    type    = boolean
    default = false
  }
  primary_key {
    columns = [column.id]
  }
  foreign_key "election_ballots_election_fk" {
    columns     = [column.election_id]
    ref_columns = [table.elections.column.id]
    on_delete   = RESTRICT
  }
  index "election_ballots_election_idx" {
    columns = [column.election_id]
  }
}

# The count of each candidate, written from the ballots when the election closes.
table "election_tallies" {
  schema = schema.tenant
  column "tenant_id" {
    type = uuid
  }
  column "election_id" {
    type = uuid
  }
  column "position_id" {
    type = uuid
  }
  column "candidate_id" {
    type = uuid
  }
  column "votes" {
    type = integer
  }
  primary_key {
    columns = [column.candidate_id]
  }
  foreign_key "election_tallies_candidate_fk" {
    columns     = [column.candidate_id, column.position_id, column.election_id]
    ref_columns = [table.election_candidates.column.id, table.election_candidates.column.position_id, table.election_candidates.column.election_id]
    on_delete   = RESTRICT
  }
  index "election_tallies_election_idx" {
    columns = [column.election_id, column.position_id]
  }
  check "election_tallies_votes_check" {
    expr = "votes >= 0"
  }
}

# The append-only log of an election, written in the same transaction as the
# change it records; a ballot's entry names the member, never the choices.
table "election_activities" {
  schema = schema.tenant
  column "id" {
    type    = uuid
    default = sql("gen_random_uuid()")
  }
  column "tenant_id" {
    type = uuid
  }
  column "election_id" {
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
  foreign_key "election_activities_election_fk" {
    columns     = [column.election_id]
    ref_columns = [table.elections.column.id]
    on_delete   = RESTRICT
  }
  index "election_activities_tenant_election_idx" {
    columns = [column.tenant_id, column.election_id, column.id]
  }
  check "election_activities_action_check" {
    expr = "action IN ('created', 'updated', 'position_added', 'position_removed', 'candidate_added', 'candidate_removed', 'opened', 'closed', 'published', 'ballot_cast')"
  }
}
