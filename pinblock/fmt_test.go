package pinblock

import "fmt"

// fmtAll formats v with every common verb.
func fmtAll(v any) string {
	return fmt.Sprintf("%v|%+v|%#v|%s|%q|%x|%X|%d", v, v, v, v, v, v, v, v)
}
