package main

import "context"

// BranchConfig is the branch and self-service HTTPS channel (issue 8).
type BranchConfig struct{}

// startBranchAPI starts the branch HTTPS API over g.flow, if configured.
func (g *gateway) startBranchAPI(ctx context.Context) error { return nil }

// stopBranchAPI drains and stops the branch API.
func (g *gateway) stopBranchAPI(ctx context.Context) error { return nil }
