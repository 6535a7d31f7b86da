package branchapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"pingate/integration/logredact"
	"pingate/iso8583"
	"pingate/routing"
)

// OperationResult is the answer about one operation: from the POST that ran
// it, from its approval, and from GET /v1/operations/{id}. It carries the
// masked PAN only.
type OperationResult struct {
	OperationID  string      `json:"operation_id"`
	Operation    string      `json:"operation"`
	Status       string      `json:"status"`
	Channel      string      `json:"channel"`
	Institution  string      `json:"institution"`
	Branch       string      `json:"branch"`
	Terminal     string      `json:"terminal"`
	MaskedPAN    string      `json:"masked_pan"`
	Teller       string      `json:"teller,omitempty"`
	Supervisor   string      `json:"supervisor,omitempty"`
	Mode         string      `json:"mode,omitempty"`
	Outcome      string      `json:"outcome,omitempty"`
	ResponseCode string      `json:"response_code,omitempty"`
	Reason       string      `json:"reason,omitempty"`
	EventID      string      `json:"event_id,omitempty"`
	Mailer       *MailerInfo `json:"mailer,omitempty"`
	Submitted    time.Time   `json:"submitted"`
	ApproveBy    *time.Time  `json:"approve_by,omitempty"`
	Completed    *time.Time  `json:"completed,omitempty"`
}

// MailerInfo tells a generated-PIN reset's mailer: its reference (the file
// name in the spool) and whether it was printed (only after the issuer
// approved). It never carries the PIN.
type MailerInfo struct {
	Reference string `json:"reference"`
	Printed   bool   `json:"printed"`
}

// approvalBody is the body of POST /v1/operations/{id}/approval.
type approvalBody struct {
	Decision *string `json:"decision"`
}

// Approval decisions.
const (
	DecisionApprove = "approve"
	DecisionRefuse  = "refuse"
)

var opIDPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// answer is a response ready to send (and to replay for an idempotency key).
type answer struct {
	status      int
	contentType string
	location    string
	body        []byte
	problem     string // problem slug, for the log
	opID        string
}

func problemAnswer(p *Problem) answer {
	slug := strings.TrimPrefix(p.Type, ProblemTypeBase)
	return answer{status: p.Status, contentType: "application/problem+json", body: encodeProblem(p), problem: slug, opID: p.OperationID}
}

func jsonAnswer(status int, v any) answer {
	b, _ := json.Marshal(v) // OperationResult always encodes
	return answer{status: status, contentType: "application/json", body: append(b, '\n')}
}

func (a answer) write(w http.ResponseWriter) {
	if a.location != "" {
		w.Header().Set("Location", a.location)
	}
	if a.status == http.StatusMethodNotAllowed && w.Header().Get("Allow") == "" {
		w.Header().Set("Allow", "GET, POST")
	}
	writeRaw(w, a.status, a.contentType, a.body)
}

// route is a resolved request path.
type route struct {
	template string // as in docs/openapi.yaml, for spans, metrics and logs
	methods  []string
	opID     string
	serve    func(ctx context.Context, r *http.Request, c *Client, opID string) answer
}

// resolve maps a path to its route without redirecting or cleaning it: a
// path that is not exactly one of the API's is 404.
func (s *Server) resolve(path string) (route, bool) {
	switch path {
	case "/v1/pin/changes":
		return route{template: path, methods: []string{http.MethodPost}, serve: s.opHandler(routing.OpChange)}, true
	case "/v1/pin/resets":
		return route{template: path, methods: []string{http.MethodPost}, serve: s.opHandler(routing.OpReset)}, true
	case "/v1/pin/unblocks":
		return route{template: path, methods: []string{http.MethodPost}, serve: s.opHandler(routing.OpUnblock)}, true
	case "/v1/openapi.yaml":
		return route{template: path, methods: []string{http.MethodGet, http.MethodHead}, serve: s.serveSpec}, true
	}
	rest, ok := strings.CutPrefix(path, "/v1/operations/")
	if !ok {
		return route{}, false
	}
	if id, ok := strings.CutSuffix(rest, "/approval"); ok && opIDPattern.MatchString(id) {
		return route{template: "/v1/operations/{id}/approval", methods: []string{http.MethodPost}, opID: id, serve: s.serveApproval}, true
	}
	if opIDPattern.MatchString(rest) {
		return route{template: "/v1/operations/{id}", methods: []string{http.MethodGet, http.MethodHead}, opID: rest, serve: s.serveLookup}, true
	}
	return route{}, false
}

// ServeHTTP answers one request: it resolves the identity of the client
// certificate, traces, counts and logs the request, and never answers with
// anything but the API's JSON or problem+json (or the OpenAPI document).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := s.now()
	ctx := otel.GetTextMapPropagator().Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	rt, found := s.resolve(r.URL.Path)
	template := rt.template
	if !found {
		template = "unmatched"
	}
	// The request id and the span go into ctx, so that every line logged
	// for this request, the request line below included, carries
	// request_id, trace_id and span_id (docs/operations.md, "Logs").
	reqID := uuid.NewString()
	ctx = logredact.WithRequestID(ctx, reqID)
	ctx, span := s.tracer.Start(ctx, r.Method+" "+template, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("http.request.method", r.Method), attribute.String("http.route", template)))
	defer span.End()
	if span.IsRecording() {
		span.SetAttributes(attribute.String("pingate.request_id", reqID))
	}

	client := s.identity(r)
	channel := ""
	if client != nil {
		channel = string(client.Channel())
		span.SetAttributes(attribute.String("pingate.channel", channel), attribute.String("pingate.identity", client.ID))
	}
	var a answer
	switch {
	case client == nil:
		// Only without TLS (never in Serve): every TLS client has a mapped identity.
		a = problemAnswer(probRole.problem("No client certificate identity."))
	case !found:
		a = problemAnswer(probNotFound.problem("No such resource."))
	case !slices.Contains(rt.methods, r.Method):
		w.Header().Set("Allow", strings.Join(rt.methods, ", "))
		a = problemAnswer(probMethod.problem("This resource takes " + strings.Join(rt.methods, " or ") + "."))
	default:
		a = rt.serve(ctx, r, client, rt.opID)
	}
	if r.Method == http.MethodHead {
		a.body = a.body[:0]
	}
	a.write(w)

	span.SetAttributes(attribute.Int("http.response.status_code", a.status))
	if a.opID != "" {
		span.SetAttributes(attribute.String("pingate.operation_id", a.opID))
	}
	if a.problem != "" {
		span.SetAttributes(attribute.String("pingate.problem", a.problem))
	}
	if a.status >= 500 {
		span.SetStatus(codes.Error, a.problem)
	}
	d := s.now().Sub(start)
	s.m.record(ctx, template, r.Method, channel, a.status, d)
	attrs := []any{"method", r.Method, "route", template, "status", a.status, "ms", d.Milliseconds()}
	if client != nil {
		attrs = append(attrs, "identity", client.ID, "institution", client.Institution)
	}
	if a.opID != "" {
		attrs = append(attrs, "operation_id", a.opID)
	}
	if a.problem != "" {
		attrs = append(attrs, "problem", a.problem)
	}
	s.log.InfoContext(ctx, "branch api request", attrs...)
}

// identity maps the verified client certificate to its configured identity.
func (s *Server) identity(r *http.Request) *Client {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return nil
	}
	c, ok := s.cfg.client(r.TLS.PeerCertificates[0].Subject.String())
	if !ok {
		return nil
	}
	return c
}

// readJSON checks the content type and reads the body within the size
// limit. A nil *Problem means the bytes are ready to parse.
func (s *Server) readJSON(r *http.Request) ([]byte, *Problem) {
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return nil, probMediaType.problem("Send the body as application/json.")
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return nil, probMediaType.problem("Send the body as application/json in UTF-8.")
	}
	// A body under a content coding (gzip, deflate) would be parsed as the
	// raw bytes: refused, as RFC 9110 §15.5.16 asks of a coding not served.
	for _, line := range r.Header.Values("Content-Encoding") {
		for ce := range strings.SplitSeq(line, ",") {
			if ce = strings.TrimSpace(ce); ce != "" && !strings.EqualFold(ce, "identity") {
				return nil, probMediaType.problem("Send the body without a Content-Encoding.")
			}
		}
	}
	if r.ContentLength > s.cfg.MaxBodyBytes {
		return nil, probTooLarge.problem("The body is larger than the server takes.")
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, s.cfg.MaxBodyBytes+1))
	var ne net.Error
	switch {
	case err == nil && int64(len(body)) > s.cfg.MaxBodyBytes:
		return nil, probTooLarge.problem("The body is larger than the server takes.")
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return nil, probTimeout.problem("The body did not arrive within the read timeout.")
	case err != nil:
		return nil, probMalformedJSON.problem("The body could not be read.")
	}
	return body, nil
}

// idempotent runs do once per Idempotency-Key of client: a retry with the
// same key and the same request waits for and replays the first answer; the
// same key with another request is refused. Without the header, do just
// runs.
func (s *Server) idempotent(ctx context.Context, r *http.Request, c *Client, template string, canonical []byte, do func() answer) answer {
	keys := r.Header.Values("Idempotency-Key")
	if len(keys) == 0 {
		return do()
	}
	key := keys[0]
	if len(keys) > 1 || !validIdemKey(key) {
		return problemAnswer(probIdemKeyInvalid.problem("Send one Idempotency-Key of 1 to 255 visible ASCII characters."))
	}
	fp := s.st.fingerprint(template, canonical)
	rec, first, err := s.st.beginIdem(c.Subject, key, fp, s.now())
	switch {
	case errors.Is(err, errKeyReused):
		return problemAnswer(probIdemKeyReused.problem("This Idempotency-Key was used for a different request; use a new key."))
	case err != nil:
		return storeFailure(err, "Too many records held; retry later.")
	}
	if first {
		a := do()
		s.st.finishIdem(rec, a.status, a.contentType, a.location, a.body)
		return a
	}
	select {
	case <-rec.done:
	case <-ctx.Done():
		return problemAnswer(probTimeout.problem("The first request with this Idempotency-Key is still running."))
	}
	return answer{status: rec.status, contentType: rec.contentType, location: rec.location, body: rec.body, problem: "replayed"}
}

func validIdemKey(k string) bool {
	if k == "" || len(k) > 255 {
		return false
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x21 || k[i] > 0x7e {
			return false
		}
	}
	return true
}

// opHandler serves POST /v1/pin/changes, /resets and /unblocks.
func (s *Server) opHandler(op routing.Operation) func(context.Context, *http.Request, *Client, string) answer {
	template := "/v1/pin/" + map[routing.Operation]string{routing.OpChange: "changes", routing.OpReset: "resets", routing.OpUnblock: "unblocks"}[op]
	return func(ctx context.Context, r *http.Request, c *Client, _ string) answer {
		if op == routing.OpReset && !c.MayReset() {
			// A reset follows an identity check at a counter: a kiosk has
			// no one to check the cardholder, whatever the dual control.
			return problemAnswer(probRole.problem("A reset is submitted by a teller or supervisor after an identity check; a kiosk cannot submit one."))
		}
		raw, p := s.readJSON(r)
		if p != nil {
			return problemAnswer(p)
		}
		po, p := parseOp(op, raw)
		clear(raw)
		if p != nil {
			return problemAnswer(p)
		}
		if *po.body.Branch != c.Branch {
			return problemAnswer(probBranch.problem("The branch in the body is not the branch of the client certificate."))
		}
		if po.body.Teller != nil && *po.body.Teller != c.ID {
			// The event and DE 48 name who authenticated, never a claim.
			return problemAnswer(probTeller.problem("The teller in the body is not the identity of the client certificate."))
		}
		if po.new != nil || po.old != nil {
			if acq, ok := s.flow.Acquirer(c.Institution); ok {
				// Refused before the operation is taken, with the flow's
				// own check: nothing is recorded or run.
				_, err := acq.BlockKey(po.format, po.keyIdx)
				switch {
				case errors.Is(err, routing.ErrFormatRefused):
					return problemAnswer(probFormatNotPermitted.fieldProblem("Send the PIN block in a format the institution is configured for.",
						"pin_format", "not a format of the institution"))
				case errors.Is(err, routing.ErrUnknownKeyIndex):
					return problemAnswer(probKeyIndexUnknown.fieldProblem("The institution has no zone PIN key at this key index.",
						"key_index", "no zone PIN key of the institution"))
				}
			}
		}
		return s.idempotent(ctx, r, c, template, po.canonical(), func() answer { return s.submit(ctx, op, po, c) })
	}
}

// submit takes a valid operation: a reset under dual control waits for its
// approval (202); everything else runs in the flow now (200).
func (s *Server) submit(ctx context.Context, op routing.Operation, po *parsedOp, c *Client) answer {
	now := s.now()
	id := uuid.NewString()
	b := &po.body
	req := &routing.Request{
		ID: id, Operation: op, Channel: c.Channel(), Acquirer: c.Institution,
		Terminal: *b.Terminal, Merchant: merchantID(c.Branch), RRN: rrn(id), PAN: *b.PAN,
		OldBlock: po.old, NewBlock: po.new, Format: po.format, KeyIndex: po.keyIdx,
		Received: now,
	}
	// The teller of the event and of DE 48 is the client certificate's
	// identity (the body's teller, if any, was checked to be the same).
	req.Teller = c.ID
	if b.IdentityCheckRef != nil {
		req.IdentityRef = *b.IdentityCheckRef
	}
	inst, _ := s.cfg.institution(c.Institution) // Validate guarantees it
	if po.mode == ModeGenerated {
		g := &routing.GenerateSpec{}
		if b.PINLength != nil {
			g.Length = *b.PINLength
		}
		if br, ok := inst.branch(c.Branch); ok {
			g.MailerAddress = slices.Clone(br.Address)
		}
		req.Generate = g
	}
	res := OperationResult{
		OperationID: id, Operation: string(op), Channel: string(req.Channel), Institution: c.Institution,
		Branch: c.Branch, Terminal: req.Terminal, MaskedPAN: iso8583.MaskPAN(req.PAN), Teller: req.Teller,
		Mode: po.mode, Submitted: now.UTC(),
	}
	if po.mode == ModeGenerated {
		res.Mailer = &MailerInfo{Reference: id}
	}
	rec := &record{id: id, institution: c.Institution}
	if op == routing.OpReset && inst.dualControl() {
		by := now.Add(inst.ApprovalWindow).UTC()
		res.Status, res.ApproveBy = StatusPendingApproval, &by
		rec.result = res
		rec.pending = &pendingReset{req: req, submitter: c.Subject, approveBy: by}
		if err := s.st.add(rec, now); err != nil {
			return storeFailure(err, "Too many operations held; retry later.")
		}
		a := jsonAnswer(http.StatusAccepted, res)
		a.location, a.opID = "/v1/operations/"+id, id
		return a
	}
	res.Status = StatusInProgress
	rec.result = res
	if err := s.st.add(rec, now); err != nil {
		return storeFailure(err, "Too many operations held; retry later.")
	}
	res = s.run(ctx, req, res)
	a := jsonAnswer(http.StatusOK, res)
	a.opID = id
	return a
}

// run hands req to the flow and records the outcome. The flow runs detached
// from the client's connection: a client that drops still finds the outcome
// at GET /v1/operations/{id}. The PIN blocks are cleared afterwards.
func (s *Server) run(ctx context.Context, req *routing.Request, res OperationResult) OperationResult {
	out := s.flow.Handle(context.WithoutCancel(ctx), req)
	clear(req.OldBlock)
	clear(req.NewBlock)
	res.Status = StatusCompleted
	res.Outcome, res.ResponseCode, res.Reason, res.EventID = out.Outcome, out.Code, out.Reason, out.EventID
	if out.Outcome == routing.OutcomeFailed && out.Reason == routing.ReasonJournalUnavailable {
		// The flow could not record the outcome (and reversed an approval):
		// there is no event to name, and the failure must not go unseen.
		res.EventID = ""
		s.log.ErrorContext(ctx, "branch api outcome not recorded", "operation_id", req.ID, "operation", string(req.Operation),
			"identity", req.Teller, "institution", req.Acquirer, "response_code", out.Code)
	}
	if req.Supervisor != "" {
		res.Supervisor = req.Supervisor
	}
	if res.Mailer != nil {
		res.Mailer.Printed = out.Outcome == routing.OutcomeApproved
	}
	done := s.now().UTC()
	res.Completed = &done
	s.st.set(req.ID, res)
	return res
}

// serveLookup answers GET /v1/operations/{id}: operations of the client's
// own institution only (another institution's id is 404, as if unknown).
func (s *Server) serveLookup(_ context.Context, _ *http.Request, c *Client, id string) answer {
	res, err := s.st.get(id, c.Institution, s.now())
	if err != nil {
		return storeFailure(err, "")
	}
	a := jsonAnswer(http.StatusOK, res)
	a.opID = id
	return a
}

// serveApproval answers POST /v1/operations/{id}/approval: a supervisor of
// the same branch, other than the submitter and the teller, approves (the
// reset runs now) or refuses (it never reaches the issuer).
func (s *Server) serveApproval(ctx context.Context, r *http.Request, c *Client, id string) answer {
	raw, p := s.readJSON(r)
	if p != nil {
		return problemAnswer(p)
	}
	fields, p := objectFields(raw)
	if p != nil {
		return problemAnswer(p)
	}
	for k := range fields {
		if k != "decision" {
			p := probUnknownField.problem("The approval takes only the field \"decision\".")
			if fieldNameShape.MatchString(k) {
				p.Errors = []FieldProblem{{Pointer: "/" + k, Detail: "not a field of an approval"}}
			}
			return problemAnswer(p)
		}
	}
	var b approvalBody
	if err := json.Unmarshal(raw, &b); err != nil || b.Decision == nil || (*b.Decision != DecisionApprove && *b.Decision != DecisionRefuse) {
		p := probInvalidRequest.problem("The approval needs a decision.")
		p.Errors = []FieldProblem{{Pointer: "/decision", Detail: "required: approve or refuse"}}
		return problemAnswer(p)
	}
	if !c.Has(RoleSupervisor) {
		return problemAnswer(probRole.problem("Only a supervisor approves or refuses a reset."))
	}
	canonical, _ := json.Marshal(b)
	return s.idempotent(ctx, r, c, "/v1/operations/{id}/approval", append([]byte(id), canonical...), func() answer {
		return s.decide(ctx, c, id, *b.Decision == DecisionApprove)
	})
}

func (s *Server) decide(ctx context.Context, c *Client, id string, approve bool) answer {
	// The supervisor must be of the reset's branch: look it up first.
	cur, err := s.st.get(id, c.Institution, s.now())
	if err != nil {
		return storeFailure(err, "")
	}
	withOp := func(p *Problem) answer { p.OperationID = id; return problemAnswer(p) }
	if cur.Branch != c.Branch {
		return withOp(probBranch.problem("A supervisor approves the resets of their own branch."))
	}
	pend, res, err := s.st.takePending(id, c.Institution, c.Subject, c.ID, approve, s.now())
	switch {
	case errors.Is(err, errNotFound):
		return problemAnswer(probNotFound.problem("No operation with this id."))
	case errors.Is(err, errExpired):
		return withOp(probApprovalExpired.problem("The approval window has passed; the teller submits the reset again."))
	case errors.Is(err, errNotPending):
		return withOp(probNotPending.problem("The operation is " + res.Status + ", not waiting for an approval."))
	case errors.Is(err, errSelfApproval):
		return withOp(probSelfApproval.problem("A second, different identity must approve."))
	case err != nil:
		return storeFailure(err, "")
	}
	if pend != nil {
		pend.req.Supervisor = c.ID
		res = s.run(ctx, pend.req, res)
	}
	a := jsonAnswer(http.StatusOK, res)
	a.opID = id
	return a
}

// storeFailure answers a store error: 503 when the shared store is
// unreachable (nothing ran; retry later), 503 with full for a store at its
// bound, and 404 for an unknown id (full == "").
func storeFailure(err error, full string) answer {
	switch {
	case errors.Is(err, ErrStoreUnavailable):
		return problemAnswer(probUnavailable.problem("The operation store is unreachable; nothing was done; retry later."))
	case errors.Is(err, errNotFound) || full == "":
		return problemAnswer(probNotFound.problem("No operation with this id."))
	}
	return problemAnswer(probUnavailable.problem(full))
}

// serveSpec answers GET /v1/openapi.yaml with the embedded contract.
func (s *Server) serveSpec(context.Context, *http.Request, *Client, string) answer {
	return answer{status: http.StatusOK, contentType: "application/yaml", body: OpenAPI()}
}
