package pinblock_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"

	"pingate/pinblock"
)

// A key prints as its id, usage, version and KCV, whatever the verb, and
// refuses to be marshalled; a clear PIN never prints at all.
func ExampleKey() {
	k, err := pinblock.ParseHexKey("zpk-acq-1", pinblock.UsageZPK, pinblock.TDES, 1, "0123456789ABCDEFFEDCBA9876543210")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(k)
	fmt.Printf("%x\n", k)
	fmt.Printf("%#v\n", k)
	_, err = json.Marshal(k)
	fmt.Println(err != nil)

	log := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
	log.Info("loaded", "key", k)

	pin, _ := pinblock.NewSecretPIN("8142")
	fmt.Println(pin)
	// Output:
	// key(zpk-acq-1 ZPK v1 kcv=08D7B4)
	// key(zpk-acq-1 ZPK v1 kcv=08D7B4)
	// key(zpk-acq-1 ZPK v1 kcv=08D7B4)
	// true
	// level=INFO msg=loaded key.id=zpk-acq-1 key.usage=ZPK key.version=1 key.kcv=08D7B4
	// PIN(redacted)
}

// Translating an acquirer's format 0 block into an issuer's format 4 block
// through the software security module.
func ExampleSoftwareModule_Translate() {
	ring := pinblock.NewKeyring(0)
	defer ring.Zeroize()
	acq, _ := pinblock.ParseHexKey("acq", pinblock.UsageZPK, pinblock.TDES, 1, "0123456789ABCDEFFEDCBA9876543210")
	iss, _ := pinblock.ParseHexKey("iss", pinblock.UsageZPK, pinblock.AES, 1, "AF8CB133A78F8DC2D1359F18527593FB")
	_ = ring.Add(acq)
	_ = ring.Add(iss)
	m := pinblock.NewSoftwareModule(ring, pinblock.DefaultPINPolicy(), nil)

	pin, _ := pinblock.NewSecretPIN("8142")
	in, _ := pinblock.Encipher(pinblock.Format0, pin, "4111111111111111", acq)
	out, err := m.Translate(context.Background(), pinblock.TranslateRequest{
		PAN: "4111111111111111", Block: in,
		From: pinblock.KeyRef{ID: "acq"}, FromFormat: pinblock.Format0,
		To: pinblock.KeyRef{ID: "iss"}, ToFormat: pinblock.Format4,
	})
	fmt.Println(len(out), err)
	// Output: 16 <nil>
}
