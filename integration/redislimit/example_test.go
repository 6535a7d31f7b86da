package redislimit_test

import (
	"context"
	"fmt"
	"strings"

	"github.com/alicebob/miniredis/v2"

	"pingate/integration/redislimit"
	"pingate/routing"
)

// Three wrong PINs in an hour, recorded by any gateway instance, refuse the
// card's next PIN change with 75. Keys hold the card token, never the PAN.
func ExampleLimiter_Allow() {
	m, _ := miniredis.Run() // a real deployment points Addrs at Redis
	defer m.Close()
	l, err := redislimit.New(redislimit.Config{Addrs: []string{m.Addr()}})
	if err != nil {
		panic(err)
	}
	defer l.Close()
	ctx := context.Background()
	req := &routing.Request{Operation: routing.OpChange, Acquirer: "bank1", Terminal: "ATM00042",
		PAN: "4000001234567899", CardToken: "k7Qx"}

	for i := range 3 {
		req.ID = fmt.Sprint("op-", i)
		d, _ := l.Allow(ctx, req)
		fmt.Println("allowed:", d.Allowed)
		_ = l.Record(ctx, req, "55") // the issuer answered: incorrect PIN
	}
	d, _ := l.Allow(ctx, req)
	r := routing.ResponseFor(&routing.LimitError{Limit: d.Limit, Err: d.Refusal}) // what the flow answers
	fmt.Printf("allowed: %v code: %s reason: %s\n", d.Allowed, r.Code, r.Reason)
	for _, k := range m.Keys() {
		if i := strings.Index(k, ":ops:"); i >= 0 {
			k = k[:i] + ":ops:<yyyymmdd>" // today's date
		}
		fmt.Println(k)
	}
	// Output:
	// allowed: true
	// allowed: true
	// allowed: true
	// allowed: false code: 75 reason: card_wrong_pin_limit
	// pg:{a:bank1}
	// pg:{c:k7Qx}:ops:<yyyymmdd>
	// pg:{c:k7Qx}:wp
	// pg:{t:bank1:ATM00042}
}

// The in-process limiter of the embedded default: the same limits without
// Redis. The eleventh operation of a card in one day is refused, and the
// flow answers it 65.
func ExampleMemory() {
	l, err := redislimit.NewMemory(redislimit.Config{}) // the defaults: 10 operations per card per day
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	for i := range 11 {
		req := &routing.Request{Operation: routing.OpUnblock, Acquirer: "bank1", Terminal: fmt.Sprintf("BR%06d", i),
			CardToken: "k7Qx"}
		d, _ := l.Allow(ctx, req)
		if !d.Allowed {
			r := routing.ResponseFor(&routing.LimitError{Limit: d.Limit, Err: d.Refusal})
			fmt.Printf("operation %d: refused by %s, code %s, reason %s\n", i+1, d.Limit, r.Code, r.Reason)
		}
	}
	// Output:
	// operation 11: refused by card_daily, code 65, reason card_daily_limit
}
