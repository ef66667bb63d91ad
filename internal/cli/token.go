package cli

import (
	"context"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/publicdigit/publicdigit/internal/access"
	"github.com/publicdigit/publicdigit/internal/app"
	"github.com/publicdigit/publicdigit/internal/tenant"
)

func newTokenCmd(e *env) *cobra.Command {
	c := &cobra.Command{Use: "token", Short: "Create, list and revoke API tokens"}
	c.AddCommand(newTokenCreateCmd(e), newTokenListCmd(e), newTokenRevokeCmd(e))
	return c
}

func newTokenCreateCmd(e *env) *cobra.Command {
	var platformKind bool
	var tenant, name string
	var expires time.Duration
	c := &cobra.Command{
		Use:   "create (--platform | --tenant <slug>) [--name <name>]",
		Short: "Create a token and print it (only this once) on standard output",
		Long: `Creates a platform-admin token (--platform) or a token scoped to one tenant
(--tenant <slug>) and prints the secret on standard output, alone on its line,
so it can be captured: TOKEN=$(tenantctl token create --platform --name ops).
Only its SHA-256 is stored: it cannot be shown again.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if platformKind == (tenant != "") {
				return usagef("token create needs exactly one of --platform or --tenant <slug>")
			}
			if expires < 0 {
				return usagef("--expires must be positive")
			}
			r := access.CreateRequest{Name: name, Kind: access.KindPlatform}
			if tenant != "" {
				slug, err := slugArg(tenant)
				if err != nil {
					return err
				}
				r.Kind, r.Tenant = access.KindTenant, slug
				if name == "" {
					r.Name = "tenant " + slug.String()
				}
			} else if name == "" {
				r.Name = "platform"
			}
			if expires > 0 {
				at := time.Now().Add(expires)
				r.ExpiresAt = &at
			}
			return e.withApp(cmd, time.Minute, func(ctx context.Context, a *app.App) error {
				secret, tok, err := a.Tokens.Create(ctx, r)
				if err != nil {
					return err
				}
				fmt.Fprintln(e.out, secret)
				fmt.Fprintf(e.errOut, "created %s token %s (%s…); it is shown only once\n", tok.Kind, tok.ID, tok.Prefix)
				return nil
			})
		},
	}
	c.Flags().BoolVar(&platformKind, "platform", false, "a platform-admin token")
	c.Flags().StringVar(&tenant, "tenant", "", "a token for this tenant only")
	c.Flags().StringVar(&name, "name", "", "a name to recognise the token by")
	c.Flags().DurationVar(&expires, "expires", 0, "expire after this long (e.g. 720h; default never)")
	return c
}

func newTokenListCmd(e *env) *cobra.Command {
	var tenant string
	var all, asJSON bool
	c := &cobra.Command{
		Use:   "list",
		Short: "List tokens (never their secrets)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			f := access.ListFilter{IncludeRevoked: all}
			if tenant != "" {
				slug, err := slugArg(tenant)
				if err != nil {
					return err
				}
				f.Tenant = slug
			}
			return e.withApp(cmd, time.Minute, func(ctx context.Context, a *app.App) error {
				ts, err := a.Tokens.List(ctx, f)
				if err != nil {
					return err
				}
				if asJSON {
					return printJSON(e, append([]access.Token{}, ts...))
				}
				tw := tabwriter.NewWriter(e.out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tNAME\tKIND\tTENANT\tPREFIX\tCREATED\tLAST USED\tEXPIRES\tREVOKED")
				for _, t := range ts {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s…\t%s\t%s\t%s\t%s\n", t.ID, t.Name, t.Kind, dash(slugText(t.Tenant)),
						t.Prefix, t.CreatedAt.UTC().Format(time.DateTime), when(t.LastUsedAt), when(t.ExpiresAt), when(t.RevokedAt))
				}
				return tw.Flush()
			})
		},
	}
	c.Flags().StringVar(&tenant, "tenant", "", "only this tenant's tokens")
	c.Flags().BoolVar(&all, "all", false, "include revoked tokens")
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

func slugText(s tenant.Slug) string { return s.String() }

func when(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format(time.DateTime)
}

func newTokenRevokeCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "revoke <id>",
		Short: "Revoke a token (by the id that token list shows)",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("token revoke needs exactly one token id")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return e.withApp(cmd, time.Minute, func(ctx context.Context, a *app.App) error {
				t, err := a.Tokens.Revoke(ctx, args[0])
				if err != nil {
					return err
				}
				fmt.Fprintf(e.out, "token %s (%s): revoked at %s\n", t.ID, t.Name, when(t.RevokedAt))
				return nil
			})
		},
	}
}
