package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"pingate/integration/branchapi"
)

// runDevCerts writes fresh development certificates into DIR: ca.pem (and
// its key), server.pem for localhost and the loopback addresses, and one
// client certificate per development identity (teller, teller2, supervisor,
// kiosk). The last line of stdout is the directory.
func runDevCerts(_ context.Context, args []string, stdout, _ io.Writer) error {
	fs := newFlagSet("dev-certs")
	inst := fs.String("institution", devBranchAcquirer, "acquirer id the development identities act for")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%w: pingate dev-certs [-institution ID] DIR", errUsage)
	}
	dir := fs.Arg(0)
	ids := branchapi.DevIdentities(*inst)
	if err := branchapi.WriteDevCerts(dir, ids, time.Now()); err != nil {
		return err
	}
	for _, id := range ids {
		fmt.Fprintf(stdout, "%-10s %s-key.pem  %s  (%s)\n", id.File+".pem", id.File, id.Client.Subject, id.Client.Roles[0])
	}
	fmt.Fprintln(stdout, dir)
	return nil
}
