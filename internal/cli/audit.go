package cli

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/publicdigit/publicdigit/internal/app"
	"github.com/publicdigit/publicdigit/internal/audit"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

func newAuditCmd(e *env) *cobra.Command {
	c := &cobra.Command{Use: "audit", Short: "Read the audit trail of platform actions"}
	c.AddCommand(newAuditListCmd(e))
	return c
}

func newAuditListCmd(e *env) *cobra.Command {
	var slug, action string
	var limit int
	var before int64
	var asJSON bool
	c := &cobra.Command{
		Use:   "list [--tenant S] [--action A] [--limit N] [--before ID]",
		Short: "The audit trail, newest first: who did what to which tenant, when, with what outcome",
		Long: `Lists the audit trail (landlord.audit_events), newest first: the actor (an API
token, or tenantctl and its operator), the action, the tenant, the target, the
request id and the outcome. --before continues a listing below the given id
(the last one shown). The trail cannot be changed through tenantctl or the API.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o := audit.ListOptions{Limit: limit, Before: before}
			if slug != "" {
				s, err := slugArg(slug)
				if err != nil {
					return err
				}
				o.Tenant = s.String()
			}
			if action != "" {
				if !audit.IsAction(audit.Action(action)) {
					return usagef("--action %q is not an audited action (e.g. tenant.suspend)", action)
				}
				o.Action = audit.Action(action)
			}
			if limit < 1 || limit > audit.MaxPage {
				return usagef("--limit must be between 1 and %d", audit.MaxPage)
			}
			return e.withApp(cmd, time.Minute, func(ctx context.Context, a *app.App) error {
				page, err := a.Audit.List(ctx, o)
				if err != nil {
					return err
				}
				if asJSON {
					return printJSON(e, page.Entries)
				}
				tw := tabwriter.NewWriter(e.out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tAT\tACTOR\tACTION\tTENANT\tTARGET\tOUTCOME\tREQUEST")
				for _, x := range page.Entries {
					outcome := x.Outcome
					if x.ErrorCode != nil {
						outcome += " " + *x.ErrorCode
					}
					fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", x.ID, x.At.UTC().Format(time.DateTime), x.Actor, x.Action,
						dash(deref(x.Tenant)), dash(x.Target), outcome, dash(deref(x.RequestID)))
				}
				if page.Next != 0 {
					fmt.Fprintf(tw, "(more: --before %d)\n", page.Next)
				}
				return tw.Flush()
			})
		},
	}
	c.Flags().StringVar(&slug, "tenant", "", "only the events of this tenant slug")
	c.Flags().StringVar(&action, "action", "", "only this action, e.g. tenant.suspend")
	c.Flags().IntVar(&limit, "limit", audit.DefaultPage, "events per page")
	c.Flags().Int64Var(&before, "before", 0, "continue below this event id")
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func newTenantLimitsCmd(e *env) *cobra.Command {
	var maxConcurrent, timeout string
	c := &cobra.Command{
		Use:   "limits <slug> [--max-concurrent N|default] [--statement-timeout D|default]",
		Short: "Show or change a tenant's own limits (noisy neighbours)",
		Long: `Without flags, shows the tenant's own limits and the effective ones. With
--max-concurrent (requests in flight per server) or --statement-timeout (e.g.
2s), changes them; "default" returns to the configured default. Every server
applies a change from the tenant's next request. Recorded in the audit trail.`,
		Args: exactlyOneSlug,
		RunE: func(cmd *cobra.Command, args []string) error {
			slug, err := slugArg(args[0])
			if err != nil {
				return err
			}
			changed := cmd.Flags().Changed("max-concurrent") || cmd.Flags().Changed("statement-timeout")
			return e.withApp(cmd, time.Minute, func(ctx context.Context, a *app.App) error {
				t, err := a.Catalog.Get(ctx, slug)
				if err != nil {
					return err
				}
				if changed {
					l := t.Limits()
					if cmd.Flags().Changed("max-concurrent") {
						if l.MaxConcurrentRequests, err = intOrDefault(maxConcurrent); err != nil {
							return err
						}
					}
					if cmd.Flags().Changed("statement-timeout") {
						if l.StatementTimeout, err = durationOrDefault(timeout); err != nil {
							return err
						}
					}
					if err := l.Validate(); err != nil {
						return usageError{err}
					}
					if t, err = a.Catalog.SetLimits(ctx, slug, l); err != nil {
						return err
					}
				}
				own, eff := t.Limits(), a.Limits.Effective(t)
				fmt.Fprintf(e.out, "tenant %s: max_concurrent_requests %d%s, statement_timeout %s%s\n", slug,
					eff.MaxConcurrentRequests, defaultMark(own.MaxConcurrentRequests == 0),
					eff.StatementTimeout, defaultMark(own.StatementTimeout == 0))
				return nil
			})
		},
	}
	c.Flags().StringVar(&maxConcurrent, "max-concurrent", "", `requests in flight per server, or "default"`)
	c.Flags().StringVar(&timeout, "statement-timeout", "", `statement timeout (e.g. 2s), or "default"`)
	return c
}

func defaultMark(isDefault bool) string {
	if isDefault {
		return " (default)"
	}
	return ""
}

func intOrDefault(s string) (int, error) {
	if strings.EqualFold(s, "default") {
		return 0, nil
	}
	var n int
	if _, err := fmt.Sscanf(s, "%d", &n); err != nil || n < 1 || fmt.Sprint(n) != s {
		return 0, usagef("--max-concurrent must be a positive number or default (got %q)", s)
	}
	return n, nil
}

func durationOrDefault(s string) (time.Duration, error) {
	if strings.EqualFold(s, "default") {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, usagef("--statement-timeout must be a duration such as 2s, or default (got %q)", s)
	}
	if d > tenant.MaxStatementTimeout {
		return 0, usagef("--statement-timeout must be at most %s", tenant.MaxStatementTimeout)
	}
	return d, nil
}
