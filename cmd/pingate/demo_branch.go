package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"pingate/integration/branchapi"
	"pingate/integration/gateway"
	"pingate/integration/issuersim"
	"pingate/iso8583"
	"pingate/pinblock"
	"pingate/pinblock/devkeys"
)

// branchClient calls the branch API as one development identity.
type branchClient struct {
	base string
	http *http.Client
}

func newBranchClient(rt gateway.BranchInfo, who string) (*branchClient, error) {
	ca, err := os.ReadFile(filepath.Join(rt.CertDir, branchapi.DevCAFile))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, errors.New("development CA does not parse")
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(rt.CertDir, who+".pem"), filepath.Join(rt.CertDir, who+"-key.pem"))
	if err != nil {
		return nil, err
	}
	return &branchClient{base: "https://" + rt.Addr, http: &http.Client{
		Timeout: 20 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{
			RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12,
		}},
	}}, nil
}

// post sends body and decodes the answer; a problem answer is an error
// naming its type.
func (c *branchClient) post(ctx context.Context, path string, body any, wantStatus int) (branchapi.OperationResult, error) {
	var res branchapi.OperationResult
	b, err := json.Marshal(body)
	if err != nil {
		return res, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(b))
	if err != nil {
		return res, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return res, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return res, err
	}
	if resp.StatusCode != wantStatus {
		var p branchapi.Problem
		_ = json.Unmarshal(raw, &p)
		return res, fmt.Errorf("POST %s: %d %s, want %d", path, resp.StatusCode, p.Type, wantStatus)
	}
	return res, json.Unmarshal(raw, &res)
}

var demoMailerPIN = regexp.MustCompile(`(?m)^Your new PIN: ([0-9]+)$`)

// branchDemoSteps plays the demo's branch steps over HTTPS with client
// certificates: a forgotten-PIN reset under dual control (the teller
// submits, the supervisor approves), a reset with a generated PIN and its
// mailer, the cardholder changing that PIN (read from the mailer, as the
// cardholder would), and an unblock.
func branchDemoSteps(ctx context.Context, g *gateway.Gateway) ([]demoResult, error) {
	rt, ok := g.Branch()
	if !ok {
		return nil, nil // the branch API is off in this configuration
	}
	if rt.CertDir == "" {
		return nil, errors.New("the demo needs the development certificates (no branch.tls files)")
	}
	teller, err := newBranchClient(rt, "teller")
	if err != nil {
		return nil, err
	}
	supervisor, err := newBranchClient(rt, "supervisor")
	if err != nil {
		return nil, err
	}
	sc := g.Config().IssuerSim
	pop := issuersim.Population{Seed: sc.Seed, BINs: sc.BINs, PerBIN: sc.PerBIN}
	k, err := devkeys.Key(devkeys.BranchZPK)
	if err != nil {
		return nil, err
	}
	pinPad := func(pin, pan string) (string, error) {
		p, err := pinblock.NewSecretPIN(pin)
		if err != nil {
			return "", err
		}
		b, err := pinblock.Encipher(pinblock.Format4, p, pan, k)
		return fmt.Sprintf("%X", b), err
	}
	common := func(pan, terminal string) map[string]any {
		return map[string]any{"pan": pan, "branch": branchapi.DevBranch, "terminal": terminal, "teller": "T0117-07"}
	}
	var results []demoResult
	step := func(what, op string, run func() (branchapi.OperationResult, error)) error {
		start := time.Now()
		res, err := run()
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		results = append(results, demoResult{
			Step: what, Operation: op, Channel: res.Channel, ResponseCode: res.ResponseCode, Expected: "00",
			Meaning: iso8583.ResponseText(res.ResponseCode), EventID: res.EventID,
			LatencyMS: float64(time.Since(start).Microseconds()) / 1000,
		})
		return nil
	}

	// 1. A forgotten PIN, reset under dual control.
	a := pop.Card(30)
	if err := step("branch HTTPS: reset under dual control (teller submits, supervisor approves)", "reset", func() (branchapi.OperationResult, error) {
		body := common(a.PAN, "BR0117H1")
		body["identity_check_ref"], body["mode"], body["pin_format"], body["key_index"] = "IDCHK-2026-000201", branchapi.ModePINPad, 4, 1
		var err error
		if body["new_pin_block"], err = pinPad("3917", a.PAN); err != nil {
			return branchapi.OperationResult{}, err
		}
		pending, err := teller.post(ctx, "/v1/pin/resets", body, http.StatusAccepted)
		if err != nil {
			return pending, err
		}
		return supervisor.post(ctx, "/v1/operations/"+pending.OperationID+"/approval", map[string]string{"decision": branchapi.DecisionApprove}, http.StatusOK)
	}); err != nil {
		return nil, err
	}

	// 2. A reset with a generated PIN, printed on a mailer once the issuer took it.
	b := pop.Card(31)
	var mailerRef string
	if err := step("branch HTTPS: reset with a generated PIN and its mailer", "reset", func() (branchapi.OperationResult, error) {
		body := common(b.PAN, "BR0117H2")
		body["identity_check_ref"], body["mode"] = "IDCHK-2026-000202", branchapi.ModeGenerated
		pending, err := teller.post(ctx, "/v1/pin/resets", body, http.StatusAccepted)
		if err != nil {
			return pending, err
		}
		res, err := supervisor.post(ctx, "/v1/operations/"+pending.OperationID+"/approval", map[string]string{"decision": branchapi.DecisionApprove}, http.StatusOK)
		if res.Mailer != nil && res.Mailer.Printed {
			mailerRef = res.Mailer.Reference
		}
		return res, err
	}); err != nil {
		return nil, err
	}

	// 3. The cardholder opens the mailer and changes the PIN at the branch.
	if mailerRef != "" {
		if err := step("branch HTTPS: change the PIN from the mailer", "change", func() (branchapi.OperationResult, error) {
			text, err := os.ReadFile(filepath.Join(rt.Spool, mailerRef+pinblock.MailerFileSuffix))
			if err != nil {
				return branchapi.OperationResult{}, err
			}
			defer clear(text) // the match below aliases it
			m := demoMailerPIN.FindSubmatch(text)
			if m == nil {
				return branchapi.OperationResult{}, errors.New("the mailer has no PIN line")
			}
			body := common(b.PAN, "BR0117H3")
			body["pin_format"], body["key_index"] = 4, 1
			if body["old_pin_block"], err = pinPad(string(m[1]), b.PAN); err != nil {
				return branchapi.OperationResult{}, err
			}
			if body["new_pin_block"], err = pinPad("7305", b.PAN); err != nil {
				return branchapi.OperationResult{}, err
			}
			return teller.post(ctx, "/v1/pin/changes", body, http.StatusOK)
		}); err != nil {
			return nil, err
		}
	}

	// 4. An unblock after an identity check.
	c := pop.Card(32)
	if err := step("branch HTTPS: unblock after an identity check", "unblock", func() (branchapi.OperationResult, error) {
		body := common(c.PAN, "BR0117H4")
		body["identity_check_ref"] = "IDCHK-2026-000203"
		return teller.post(ctx, "/v1/pin/unblocks", body, http.StatusOK)
	}); err != nil {
		return nil, err
	}
	return results, nil
}
