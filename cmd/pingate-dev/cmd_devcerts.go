package main

import (
	"fmt"
	"time"

	"pingate/cmd/internal/cli"
	"pingate/integration/branchapi"
)

// devCertsCmd writes fresh development certificates into DIR: ca.pem (and
// its key), server.pem for localhost and the loopback addresses, and one
// client certificate per development identity (teller, teller2, supervisor,
// kiosk). The last line of stdout is the directory.
type devCertsCmd struct {
	Institution string `name:"institution" default:"${institution}" help:"acquirer id the development identities act for"`
	Dir         string `arg:"" name:"dir" help:"directory to write the certificates and keys into"`
}

func (*devCertsCmd) Help() string { return cli.Example("pingate-dev dev-certs ./dev-certs") }

func (c *devCertsCmd) Run(env *cli.Env) error {
	ids := branchapi.DevIdentities(c.Institution)
	if err := branchapi.WriteDevCerts(c.Dir, ids, time.Now()); err != nil {
		return err
	}
	for _, id := range ids {
		fmt.Fprintf(env.Stdout, "%-10s %s-key.pem  %s  (%s)\n", id.File+".pem", id.File, id.Client.Subject, id.Client.Roles[0])
	}
	fmt.Fprintln(env.Stdout, c.Dir)
	return nil
}
