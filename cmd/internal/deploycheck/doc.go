// Package deploycheck holds the tests of deploy/ and of the docs that describe the tree: the
// Kubernetes manifests, the compose file, the systemd unit, the Dockerfile,
// the alert rules and the dashboard parse, and every port, config key,
// command line and metric name they mention exists in the code, checked
// against integration/gateway's Config, a gateway run in-process, and the
// built pingate and pingate-dev binaries. It also checks that
// docs/configuration.md names every config key, and that docs/architecture.md
// names every package of the module (and only packages that exist).
//
// Why here: deploy/ holds no Go (manifests, container and service files only), and these
// tests belong to neither binary nor to the gateway package: they read files
// of the whole repository and exec both binaries (cmd/internal/clitest), so
// they live beside the command-line code, under cmd/internal, as a test-only
// package that nothing imports.
package deploycheck
