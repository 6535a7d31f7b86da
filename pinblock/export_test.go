package pinblock

// Internals that the external tests (package pinblock_test, which can import
// pinblock/devkeys) check.
var ReadFill = readFill

const MaxPINDraws = maxPINDraws
