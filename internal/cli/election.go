package cli

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"

	"github.com/publicdigit/publicdigit/internal/app"
	"github.com/publicdigit/publicdigit/internal/elections"
	"github.com/publicdigit/publicdigit/internal/geography"
	"github.com/publicdigit/publicdigit/internal/membership"
	"github.com/publicdigit/publicdigit/internal/modules"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

// cliActor names tenantctl in the elections' log; the CLI acts as the
// tenant's admin (an operator with the platform's credentials).
const cliActor = "tenantctl"

var cliAdmin = elections.Viewer{Admin: true}

func newElectionCmd(e *env) *cobra.Command {
	c := &cobra.Command{Use: "election", Short: "A tenant's elections: drafts, positions, candidates, ballots, results"}
	c.AddCommand(newElectionListCmd(e), newElectionShowCmd(e), newElectionCreateCmd(e), newElectionUpdateCmd(e),
		newElectionPositionCmd(e), newElectionCandidateCmd(e),
		newElectionTransitionCmd(e, elections.Open, "Open a draft: ballots are accepted inside its window"),
		newElectionTransitionCmd(e, elections.Close, "Close an open election: ballots sealed, tally written"),
		newElectionTransitionCmd(e, elections.Publish, "Publish a closed election's results to every token of the tenant"),
		newElectionVoteCmd(e), newElectionResultsCmd(e), newElectionActivitiesCmd(e))
	return c
}

// withElections is withApp for a tenant that must have the elections
// module: the same answer as the API's (module_not_installed) otherwise.
func (e *env) withElections(cmd *cobra.Command, slug tenant.Slug, fn func(ctx context.Context, a *app.App) error) error {
	return e.withApp(cmd, time.Minute, func(ctx context.Context, a *app.App) error {
		ctx, t, err := a.Router.Resolve(ctx, slug)
		if err != nil {
			return err
		}
		if !t.HasModule(modules.Elections) {
			return fmt.Errorf("tenant %s: %w", slug, modules.ErrNotInstalled)
		}
		return fn(ctx, a)
	})
}

// tenantAndID parses <tenant> <id> arguments.
func tenantAndID(argv []string) (tenant.Slug, uuid.UUID, error) {
	slug, err := slugArg(argv[0])
	if err != nil {
		return slug, uuid.Nil, err
	}
	id, err := idArg(argv[1])
	return slug, id, err
}

func idArg(s string) (uuid.UUID, error) {
	id, err := uuid.Parse(s)
	if err != nil {
		return uuid.Nil, usagef("%q is not a UUID", s)
	}
	return id, nil
}

func timeFlag(name, s string) (*time.Time, error) {
	if s == "" {
		return nil, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return nil, usagef("--%s must be an RFC 3339 time, e.g. 2030-01-31T09:00:00Z", name)
	}
	return &t, nil
}

// scopeUnit resolves --scope: a geography unit id, or its code.
func scopeUnit(ctx context.Context, geo *geography.Store, s string) (int64, error) {
	if id, err := strconv.ParseInt(s, 10, 64); err == nil {
		return id, nil
	}
	p, err := geo.List(ctx, geography.ListOptions{Code: s, Limit: 1})
	if err != nil {
		return 0, err
	}
	if len(p.Units) == 0 {
		return 0, fmt.Errorf("%w: no geography unit with code %s", elections.ErrUnknownGeo, s)
	}
	return p.Units[0].ID, nil
}

func newElectionListCmd(e *env) *cobra.Command {
	var status string
	var asJSON bool
	c := &cobra.Command{
		Use:   "list <tenant>",
		Short: "List a tenant's elections (drafts included)",
		Args:  args("<tenant>"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			slug, err := slugArg(argv[0])
			if err != nil {
				return err
			}
			return e.withElections(cmd, slug, func(ctx context.Context, a *app.App) error {
				var all []elections.Election
				q := elections.ListQuery{Limit: elections.MaxLimit, Status: status}
				for {
					es, more, err := a.Elections.List(ctx, slug, q, cliAdmin)
					if err != nil {
						return err
					}
					all = append(all, es...)
					if !more {
						break
					}
					q.After = &es[len(es)-1].ID
				}
				if asJSON {
					return printJSON(e, append([]elections.Election{}, all...))
				}
				tw := tabwriter.NewWriter(e.out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tSTATUS\tOPENS\tCLOSES\tBALLOTS\tTITLE")
				for _, el := range all {
					ballots := "-"
					if el.Ballots != nil {
						ballots = strconv.Itoa(*el.Ballots)
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", el.ID, el.Status, el.OpensAt.Format(time.RFC3339),
						el.ClosesAt.Format(time.RFC3339), ballots, el.Title)
				}
				return tw.Flush()
			})
		},
	}
	c.Flags().StringVar(&status, "status", "", "only this status: draft, open, closed, published")
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

func newElectionShowCmd(e *env) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "show <tenant> <election>",
		Short: "One election with its positions and candidates",
		Args:  args("<tenant>", "<election>"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			slug, id, err := tenantAndID(argv)
			if err != nil {
				return err
			}
			return e.withElections(cmd, slug, func(ctx context.Context, a *app.App) error {
				d, err := a.Elections.Get(ctx, slug, id, cliAdmin)
				if err != nil {
					return err
				}
				if asJSON {
					return printJSON(e, d)
				}
				fmt.Fprintf(e.out, "%s  %s  %s\nwindow  %s → %s\n", d.ID, d.Status, d.Title,
					d.OpensAt.Format(time.RFC3339), d.ClosesAt.Format(time.RFC3339))
				if d.ScopeUnitID != nil {
					fmt.Fprintf(e.out, "scope   geography unit %d and below\n", *d.ScopeUnitID)
				}
				for _, p := range d.Positions {
					fmt.Fprintf(e.out, "position %s  %s (%d seats)\n", p.ID, p.Title, p.Seats)
					for _, c := range p.Candidates {
						fmt.Fprintf(e.out, "  candidate %s  %s (member %s)\n", c.ID, c.FullName, c.MemberID)
					}
				}
				return nil
			})
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

func newElectionCreateCmd(e *env) *cobra.Command {
	var title, description, opens, closes, scope string
	var asJSON bool
	c := &cobra.Command{
		Use:   "create <tenant> --title <title> --opens <time> --closes <time> [--scope <unit id or code>]",
		Short: "Create a draft election; prints its id",
		Args:  args("<tenant>"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			slug, err := slugArg(argv[0])
			if err != nil {
				return err
			}
			o, err := timeFlag("opens", opens)
			if err != nil {
				return err
			}
			cl, err := timeFlag("closes", closes)
			if err != nil {
				return err
			}
			if o == nil || cl == nil {
				return usagef("election create needs --opens and --closes")
			}
			return e.withElections(cmd, slug, func(ctx context.Context, a *app.App) error {
				in := elections.New{Title: title, Description: description, OpensAt: *o, ClosesAt: *cl}
				if scope != "" {
					id, err := scopeUnit(ctx, a.Geography, scope)
					if err != nil {
						return err
					}
					in.ScopeUnitID = &id
				}
				el, err := a.Elections.Create(ctx, slug, in, cliActor)
				if err != nil {
					return err
				}
				if asJSON {
					return printJSON(e, el)
				}
				fmt.Fprintln(e.out, el.ID)
				return nil
			})
		},
	}
	c.Flags().StringVar(&title, "title", "", "the election's title")
	c.Flags().StringVar(&description, "description", "", "a description")
	c.Flags().StringVar(&opens, "opens", "", "when ballots are first accepted (RFC 3339)")
	c.Flags().StringVar(&closes, "closes", "", "when ballots stop being accepted (RFC 3339)")
	c.Flags().StringVar(&scope, "scope", "", "only members of this geography unit (id or code) and below may vote")
	c.Flags().BoolVar(&asJSON, "json", false, "print the election as JSON")
	return c
}

func newElectionUpdateCmd(e *env) *cobra.Command {
	var title, description, opens, closes, scope string
	var noScope bool
	c := &cobra.Command{
		Use:   "update <tenant> <election> [--title] [--description] [--opens] [--closes] [--scope | --no-scope]",
		Short: "Change a draft election",
		Args:  args("<tenant>", "<election>"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			slug, id, err := tenantAndID(argv)
			if err != nil {
				return err
			}
			var p elections.Patch
			if cmd.Flags().Changed("title") {
				p.Title = &title
			}
			if cmd.Flags().Changed("description") {
				p.Description = &description
			}
			if p.OpensAt, err = timeFlag("opens", opens); err != nil {
				return err
			}
			if p.ClosesAt, err = timeFlag("closes", closes); err != nil {
				return err
			}
			if scope != "" && noScope {
				return usagef("use --scope or --no-scope, not both")
			}
			return e.withElections(cmd, slug, func(ctx context.Context, a *app.App) error {
				switch {
				case noScope:
					p.ScopeUnitID = membership.Nullable[int64]{Set: true}
				case scope != "":
					unit, err := scopeUnit(ctx, a.Geography, scope)
					if err != nil {
						return err
					}
					p.ScopeUnitID = membership.Nullable[int64]{Set: true, Valid: true, V: unit}
				}
				el, err := a.Elections.Update(ctx, slug, id, p, cliActor)
				if err != nil {
					return err
				}
				fmt.Fprintf(e.out, "election %s: updated (%s)\n", el.ID, el.Title)
				return nil
			})
		},
	}
	c.Flags().StringVar(&title, "title", "", "a new title")
	c.Flags().StringVar(&description, "description", "", "a new description")
	c.Flags().StringVar(&opens, "opens", "", "a new opening time (RFC 3339)")
	c.Flags().StringVar(&closes, "closes", "", "a new closing time (RFC 3339)")
	c.Flags().StringVar(&scope, "scope", "", "a geography unit (id or code)")
	c.Flags().BoolVar(&noScope, "no-scope", false, "every eligible member may vote")
	return c
}

func newElectionPositionCmd(e *env) *cobra.Command {
	c := &cobra.Command{Use: "position", Short: "Add or remove a draft's positions"}
	var title string
	var seats int
	add := &cobra.Command{
		Use:   "add <tenant> <election> --title <title> [--seats <n>]",
		Short: "Add a position; prints its id",
		Args:  args("<tenant>", "<election>"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			slug, id, err := tenantAndID(argv)
			if err != nil {
				return err
			}
			return e.withElections(cmd, slug, func(ctx context.Context, a *app.App) error {
				p, err := a.Elections.AddPosition(ctx, slug, id, elections.NewPosition{Title: title, Seats: seats}, cliActor)
				if err != nil {
					return err
				}
				fmt.Fprintln(e.out, p.ID)
				return nil
			})
		},
	}
	add.Flags().StringVar(&title, "title", "", "the position's title")
	add.Flags().IntVar(&seats, "seats", 1, "how many are elected")
	remove := &cobra.Command{
		Use:   "remove <tenant> <election> <position>",
		Short: "Remove a position and its candidates",
		Args:  args("<tenant>", "<election>", "<position>"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			slug, id, err := tenantAndID(argv)
			if err != nil {
				return err
			}
			pos, err := idArg(argv[2])
			if err != nil {
				return err
			}
			return e.withElections(cmd, slug, func(ctx context.Context, a *app.App) error {
				if err := a.Elections.RemovePosition(ctx, slug, id, pos, cliActor); err != nil {
					return err
				}
				fmt.Fprintf(e.out, "position %s removed\n", pos)
				return nil
			})
		},
	}
	c.AddCommand(add, remove)
	return c
}

func newElectionCandidateCmd(e *env) *cobra.Command {
	c := &cobra.Command{Use: "candidate", Short: "Add or remove a draft's candidates"}
	var member string
	add := &cobra.Command{
		Use:   "add <tenant> <election> <position> --member <member id>",
		Short: "Make an active member a candidate; prints the candidate's id",
		Args:  args("<tenant>", "<election>", "<position>"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			slug, id, err := tenantAndID(argv)
			if err != nil {
				return err
			}
			pos, err := idArg(argv[2])
			if err != nil {
				return err
			}
			m, err := idArg(member)
			if err != nil {
				return err
			}
			return e.withElections(cmd, slug, func(ctx context.Context, a *app.App) error {
				cand, err := a.Elections.AddCandidate(ctx, slug, id, pos, m, cliActor)
				if err != nil {
					return err
				}
				fmt.Fprintln(e.out, cand.ID)
				return nil
			})
		},
	}
	add.Flags().StringVar(&member, "member", "", "the member's id")
	remove := &cobra.Command{
		Use:   "remove <tenant> <election> <position> <candidate>",
		Short: "Withdraw a candidate",
		Args:  args("<tenant>", "<election>", "<position>", "<candidate>"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			slug, id, err := tenantAndID(argv)
			if err != nil {
				return err
			}
			pos, err := idArg(argv[2])
			if err != nil {
				return err
			}
			cand, err := idArg(argv[3])
			if err != nil {
				return err
			}
			return e.withElections(cmd, slug, func(ctx context.Context, a *app.App) error {
				if err := a.Elections.RemoveCandidate(ctx, slug, id, pos, cand, cliActor); err != nil {
					return err
				}
				fmt.Fprintf(e.out, "candidate %s removed\n", cand)
				return nil
			})
		},
	}
	c.AddCommand(add, remove)
	return c
}

func newElectionTransitionCmd(e *env, action elections.Action, short string) *cobra.Command {
	return &cobra.Command{
		Use:   string(action) + " <tenant> <election>",
		Short: short,
		Args:  args("<tenant>", "<election>"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			slug, id, err := tenantAndID(argv)
			if err != nil {
				return err
			}
			return e.withElections(cmd, slug, func(ctx context.Context, a *app.App) error {
				el, err := a.Elections.Transition(ctx, slug, id, action, cliActor)
				if err != nil {
					return err
				}
				fmt.Fprintf(e.out, "election %s: %s\n", el.ID, el.Status)
				return nil
			})
		},
	}
}

func newElectionVoteCmd(e *env) *cobra.Command {
	var member string
	var choices []string
	c := &cobra.Command{
		Use:   "vote <tenant> <election> --member <member id> [--choice <position>=<candidate>[,<candidate>…]]…",
		Short: "Cast a member's ballot (a position left out is a blank vote for it)",
		Args:  args("<tenant>", "<election>"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			slug, id, err := tenantAndID(argv)
			if err != nil {
				return err
			}
			b := elections.Ballot{}
			if b.MemberID, err = idArg(member); err != nil {
				return err
			}
			for _, ch := range choices {
				pos, cands, ok := strings.Cut(ch, "=")
				if !ok {
					return usagef("--choice must be <position>=<candidate>[,<candidate>…]")
				}
				c := elections.Choice{}
				if c.PositionID, err = idArg(pos); err != nil {
					return err
				}
				for _, s := range strings.Split(cands, ",") {
					cid, err := idArg(s)
					if err != nil {
						return err
					}
					c.CandidateIDs = append(c.CandidateIDs, cid)
				}
				b.Choices = append(b.Choices, c)
			}
			return e.withElections(cmd, slug, func(ctx context.Context, a *app.App) error {
				if _, err := a.Elections.Vote(ctx, slug, id, b, cliAdmin, cliActor); err != nil {
					return err
				}
				fmt.Fprintf(e.out, "ballot of member %s counted\n", b.MemberID)
				return nil
			})
		},
	}
	c.Flags().StringVar(&member, "member", "", "the voter's member id")
	c.Flags().StringArrayVar(&choices, "choice", nil, "a position and the candidates chosen for it (repeat per position)")
	return c
}

func newElectionResultsCmd(e *env) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "results <tenant> <election>",
		Short: "The counts, winners and ties of a closed election",
		Args:  args("<tenant>", "<election>"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			slug, id, err := tenantAndID(argv)
			if err != nil {
				return err
			}
			return e.withElections(cmd, slug, func(ctx context.Context, a *app.App) error {
				r, err := a.Elections.Results(ctx, slug, id, cliAdmin)
				if err != nil {
					return err
				}
				if asJSON {
					return printJSON(e, r)
				}
				fmt.Fprintf(e.out, "election %s: %s, %d ballots\n", r.ElectionID, r.Status, r.Ballots)
				tw := tabwriter.NewWriter(e.out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "POSITION\tCANDIDATE\tVOTES\tRESULT")
				for _, p := range r.Positions {
					for _, c := range p.Candidates {
						res := ""
						switch {
						case c.Elected:
							res = "elected"
						case c.Tied:
							res = "tied"
						}
						fmt.Fprintf(tw, "%s (%d)\t%s\t%d\t%s\n", p.Title, p.Seats, c.FullName, c.Votes, res)
					}
				}
				return tw.Flush()
			})
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

func newElectionActivitiesCmd(e *env) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "activities <tenant> <election>",
		Short: "The election's log, oldest first",
		Args:  args("<tenant>", "<election>"),
		RunE: func(cmd *cobra.Command, argv []string) error {
			slug, id, err := tenantAndID(argv)
			if err != nil {
				return err
			}
			return e.withElections(cmd, slug, func(ctx context.Context, a *app.App) error {
				var all []elections.Activity
				var after *uuid.UUID
				for {
					as, more, err := a.Elections.Activities(ctx, slug, id, after, elections.MaxLimit)
					if err != nil {
						return err
					}
					all = append(all, as...)
					if !more {
						break
					}
					after = &as[len(as)-1].ID
				}
				if asJSON {
					return printJSON(e, append([]elections.Activity{}, all...))
				}
				tw := tabwriter.NewWriter(e.out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "TIME\tACTION\tACTOR\tDETAIL")
				for _, x := range all {
					actor := "-"
					if x.Actor != nil {
						actor = *x.Actor
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", x.CreatedAt.Format(time.RFC3339), x.Action, actor, x.Detail)
				}
				return tw.Flush()
			})
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}
