package branchapi

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"pingate/routing"
)

// ProblemTypeBase prefixes every problem type: the type of a problem is
// ProblemTypeBase + its slug, e.g. "urn:pingate:problem:malformed-json". The
// types are stable: clients branch on them, never on title or detail.
const ProblemTypeBase = "urn:pingate:problem:"

// Problem is an RFC 9457 problem details object, sent as
// application/problem+json. Nothing in it repeats a request's PAN, PIN block
// or any other value the client sent: field errors name the field only.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
	// Errors lists the offending fields of an invalid request.
	Errors []FieldProblem `json:"errors,omitempty"`
	// OperationID is the operation a problem is about, when there is one.
	OperationID string `json:"operation_id,omitempty"`
}

// FieldProblem names one invalid field (a JSON pointer into the request
// body) and what is wrong with it, never its value.
type FieldProblem struct {
	Pointer string `json:"pointer"`
	Detail  string `json:"detail"`
}

// problemKind is one stable problem type.
type problemKind struct {
	slug   string
	status int
	title  string
}

// The problem types of the API; docs/openapi.yaml lists the same slugs.
var (
	probMalformedJSON      = problemKind{"malformed-json", http.StatusBadRequest, "The body is not a JSON object"}
	probUnknownField       = problemKind{"unknown-field", http.StatusBadRequest, "The body has a field this operation does not take"}
	probInvalidRequest     = problemKind{"invalid-request", http.StatusUnprocessableEntity, "A field is missing or invalid"}
	probInvalidPINBlock    = problemKind{"invalid-pin-block", http.StatusUnprocessableEntity, "A PIN block does not fit its format"}
	probFormatNotPermitted = flowRefusal(routing.ErrFormatRefused, "The institution may not send this PIN block format")
	probKeyIndexUnknown    = flowRefusal(routing.ErrUnknownKeyIndex, "The institution has no key at this key index")
	probMediaType          = problemKind{"unsupported-media-type", http.StatusUnsupportedMediaType, "The body must be application/json"}
	probTooLarge           = problemKind{"body-too-large", http.StatusRequestEntityTooLarge, "The body is too large"}
	probTimeout            = problemKind{"request-timeout", http.StatusRequestTimeout, "The request was not received in time"}
	probNotFound           = problemKind{"not-found", http.StatusNotFound, "No such resource"}
	probMethod             = problemKind{"method-not-allowed", http.StatusMethodNotAllowed, "Method not allowed on this resource"}
	probIdemKeyInvalid     = problemKind{"idempotency-key-invalid", http.StatusBadRequest, "The Idempotency-Key header is invalid"}
	probIdemKeyReused      = problemKind{"idempotency-key-reused", http.StatusUnprocessableEntity, "The Idempotency-Key was used for a different request"}
	probBranch             = problemKind{"branch-not-permitted", http.StatusForbidden, "The client certificate does not belong to this branch"}
	probRole               = problemKind{"role-not-permitted", http.StatusForbidden, "The client certificate's identity may not do this"}
	probTeller             = problemKind{"teller-not-permitted", http.StatusForbidden, "The teller is not the client certificate's identity"}
	probSelfApproval       = problemKind{"self-approval", http.StatusForbidden, "A reset cannot be approved by the identity that submitted it"}
	probNotPending         = problemKind{"not-pending", http.StatusConflict, "The operation is not waiting for an approval"}
	probApprovalExpired    = problemKind{"approval-expired", http.StatusConflict, "The approval window has passed"}
	probUnavailable        = problemKind{"service-unavailable", http.StatusServiceUnavailable, "The branch API cannot take operations now"}
)

// problemKinds lists every kind, for the documentation test.
var problemKinds = []problemKind{
	probMalformedJSON, probUnknownField, probInvalidRequest, probInvalidPINBlock, probFormatNotPermitted,
	probKeyIndexUnknown, probMediaType, probTooLarge, probTimeout, probNotFound, probMethod, probIdemKeyInvalid,
	probIdemKeyReused, probBranch, probRole, probTeller, probSelfApproval, probNotPending, probApprovalExpired, probUnavailable,
}

// flowRefusal is the problem kind of a refusal of the flow that the API
// finds before it takes an operation: its slug is the flow's reason (with
// '-' for '_') and its status the one routing.ResponseFor gives.
func flowRefusal(err error, title string) problemKind {
	r := routing.ResponseFor(err)
	return problemKind{strings.ReplaceAll(r.Reason, "_", "-"), r.HTTPStatus, title}
}

func (k problemKind) problem(detail string) *Problem {
	return &Problem{Type: ProblemTypeBase + k.slug, Title: k.title, Status: k.status, Detail: detail}
}

// fieldProblem is problem naming the one offending field of the body (a
// top-level member name) in Errors, as docs/branch-api.md promises for every
// problem about a field.
func (k problemKind) fieldProblem(detail, field, fieldDetail string) *Problem {
	p := k.problem(detail)
	p.Errors = []FieldProblem{{Pointer: "/" + field, Detail: fieldDetail}}
	return p
}

// encodeProblem renders p; it cannot fail for this type.
func encodeProblem(p *Problem) []byte {
	b, _ := json.Marshal(p)
	return append(b, '\n')
}

// writeProblem sends p. The caller has not written anything yet.
func writeProblem(w http.ResponseWriter, p *Problem) {
	writeRaw(w, p.Status, "application/problem+json", encodeProblem(p))
}

func writeRaw(w http.ResponseWriter, status int, contentType string, body []byte) {
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
