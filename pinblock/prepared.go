package pinblock

import (
	"context"
	"fmt"
	"sync/atomic"
)

// Route is one translation path through the security module: PIN blocks of
// FromFormat under From (an acquirer's or terminal's zone PIN key) to
// ToFormat under To (an issuer's).
type Route struct {
	From       KeyRef
	FromFormat Format
	To         KeyRef
	ToFormat   Format
}

// UsesSM4 reports whether r needs SM4: either format is an SM4 format
// (Format0SM4, Format4SM4). A security module without SM4 refuses such a
// route in Prepare, Translate and TranslatePair with ErrSM4Unsupported.
func (r Route) UsesSM4() bool { return r.FromFormat.IsSM4() || r.ToFormat.IsSM4() }

// PairBlocks are the blocks of one PIN operation on a prepared route: Old is
// the current PIN block (nil for a reset or unblock), New the new one (nil
// for an unblock). When CheckNewPIN is set, a new PIN on the exclusion list
// is refused with ErrNewPINRejected.
type PairBlocks struct {
	PAN         string
	Old, New    []byte
	CheckNewPIN bool
}

// A Translator translates PIN blocks along one Route prepared by
// SecurityModule.Prepare. The key labels are resolved once, and again only
// when the module's keys change (a rotation, an import, a reload, the end of
// a grace window), the way a PKCS #11 client finds a key object once and then
// uses its handle. A Translator is safe for concurrent use.
//
// Both methods write their results into buf when its capacity is at least
// BufferSize, and into a new buffer otherwise: a caller that keeps a buffer
// per request allocates nothing. The results alias that buffer. The bytes of
// it the call used as working space beyond the results are zero on return,
// and all of them are on error.
type Translator interface {
	// Translate translates one block. Errors are those of
	// SecurityModule.Translate.
	Translate(ctx context.Context, buf []byte, pan string, block []byte) ([]byte, error)
	// TranslatePair translates the blocks of one operation in one call; a
	// nil block gives a nil result. Errors are those of
	// SecurityModule.TranslatePair.
	TranslatePair(ctx context.Context, buf []byte, req PairBlocks) (oldOut, newOut []byte, err error)
}

// BufferSize is the buffer capacity with which a Translator call allocates
// nothing: two blocks, each with the working space of a format 4 block.
const BufferSize = 32

// softTranslator is the SoftwareModule's Translator.
type softTranslator struct {
	m     *SoftwareModule
	route Route
	keys  atomic.Pointer[routeKeys] // nil until resolved; replaced when stale
}

var _ Translator = (*softTranslator)(nil)

// Prepare checks r (PCI PIN 3-3, known PIN keys whose algorithms fit the
// formats) and returns its Translator. Its errors are those a translation on
// r would give, so a caller may prepare a route on its first use and answer
// from the error as it would for a translation.
func (m *SoftwareModule) Prepare(ctx context.Context, r Route) (Translator, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := checkTranslation(r.FromFormat, r.ToFormat); err != nil {
		return nil, err
	}
	t := &softTranslator{m: m, route: r}
	if _, err := t.resolve(); err != nil {
		return nil, err
	}
	return t, nil
}

// current returns the route's keys, resolving them again when the ring has
// changed since, or a grace window among them has ended.
func (t *softTranslator) current() (*routeKeys, error) {
	if rk := t.keys.Load(); rk != nil && rk.valid(t.m.ring.generation(), t.m.now) {
		return rk, nil
	}
	return t.resolve()
}

func (t *softTranslator) resolve() (*routeKeys, error) {
	rk := new(routeKeys)
	if err := t.m.resolve(rk, t.route); err != nil {
		return nil, err
	}
	t.keys.Store(rk)
	return rk, nil
}

func (t *softTranslator) Translate(ctx context.Context, buf []byte, pan string, block []byte) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if block == nil {
		return nil, fmt.Errorf("%w: no block", ErrInvalidPINBlock)
	}
	rk, err := t.current()
	if err != nil {
		return nil, err
	}
	job := pairJob{
		pan: pan, old: block, fromFormat: t.route.FromFormat, toFormat: t.route.ToFormat,
		fill: t.m.fill,
	}
	out, _, err := translateTo(&job, rk, buf)
	return out, err
}

func (t *softTranslator) TranslatePair(ctx context.Context, buf []byte, req PairBlocks) (oldOut, newOut []byte, err error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	rk, err := t.current()
	if err != nil {
		return nil, nil, err
	}
	job := pairJob{
		pan: req.PAN, old: req.Old, new: req.New, fromFormat: t.route.FromFormat, toFormat: t.route.ToFormat,
		fill: t.m.fill,
	}
	if req.CheckNewPIN {
		job.policy = &t.m.policy
	}
	return translateTo(&job, rk, buf)
}
