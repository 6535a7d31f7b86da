package loadgen

// The identities the load tool plays, as pingate's embedded development
// config declares them (integration/gateway defaults; a test there checks
// that they agree): an ATM network (format 0 under the development ATM zone
// key), a branch front end (format 4 under the development branch key), and
// an ATM network with SM4 PIN pads (SM4-0).
const (
	ATMAcquirer    = "100001"
	BranchAcquirer = "200001"
	SM4Acquirer    = "100003"
)

// DevBINs are the issuer simulator's card ranges in the embedded config.
var DevBINs = []string{"62284812", "62284813", "621700"}
