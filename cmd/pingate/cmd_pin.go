package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"strings"

	"pingate/pinblock"
)

func init() {
	register(command{
		name:  "pin",
		usage: "encode, decode or translate an ISO 9564-1 PIN block (development and test tool)",
		run:   runPin,
	})
}

// runPin dispatches "pin encode|decode|translate". Keys are given in clear
// hex (on the command line, from a file or from standard input: see
// secretString), so this is a tool for test data and simulation, never for
// live keys. The result alone is printed on stdout.
func runPin(_ context.Context, args []string, stdout, _ io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: pin needs a sub-command: encode, decode or translate", errUsage)
	}
	var (
		out string
		err error
	)
	switch args[0] {
	case "encode":
		out, err = pinEncode(args[1:])
	case "decode":
		out, err = pinDecode(args[1:])
	case "translate":
		out, err = pinTranslate(args[1:])
	default:
		return fmt.Errorf("%w: unknown pin sub-command %q (encode, decode, translate)", errUsage, args[0])
	}
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, out)
	return err
}

// pinEncode: --format N --pin P [--pan PAN] [--key HEX] -> the block in upper
// hex (enciphered; the clear block for format 2).
func pinEncode(args []string) (string, error) {
	fs := newFlagSet("pin encode")
	formatS := fs.String("format", "", "ISO 9564-1 format 0-4")
	pinS := secretString(fs, "pin", "clear PIN, 4-12 digits")
	pan := fs.String("pan", "", "PAN (formats 0, 3, 4)")
	keyS := secretString(fs, "key", "PIN key in hex: TDES for formats 0, 1, 3; AES for 4; none for 2")
	if err := parseFlags(fs, args); err != nil {
		return "", err
	}
	f, err := pinFormatFlag("format", *formatS)
	if err != nil {
		return "", err
	}
	if err := needPAN(f, *pan); err != nil {
		return "", err
	}
	pin, err := pinblock.NewSecretPIN(*pinS)
	if err != nil {
		return "", err
	}
	defer pin.Zeroize()
	if f == pinblock.Format2 {
		if *keyS != "" {
			return "", fmt.Errorf("%w: format 2 blocks are never enciphered: drop --key", errUsage)
		}
		b, err := pinblock.EncodeClear(f, pin, *pan)
		if err != nil {
			return "", err
		}
		defer clear(b)
		return strings.ToUpper(hex.EncodeToString(b)), nil
	}
	k, err := pinKeyFlag("key", f, *keyS)
	if err != nil {
		return "", err
	}
	defer k.Zeroize()
	b, err := pinblock.Encipher(f, pin, *pan, k)
	if err != nil {
		return "", err
	}
	return strings.ToUpper(hex.EncodeToString(b)), nil
}

// pinDecode: --format N [--pan PAN] [--key HEX] --block HEX -> the PIN.
func pinDecode(args []string) (string, error) {
	fs := newFlagSet("pin decode")
	formatS := fs.String("format", "", "ISO 9564-1 format 0-4")
	pan := fs.String("pan", "", "PAN (formats 0, 3, 4)")
	keyS := secretString(fs, "key", "PIN key in hex (none for format 2)")
	blockS := secretString(fs, "block", "PIN block in hex")
	if err := parseFlags(fs, args); err != nil {
		return "", err
	}
	f, err := pinFormatFlag("format", *formatS)
	if err != nil {
		return "", err
	}
	if err := needPAN(f, *pan); err != nil {
		return "", err
	}
	block, err := pinBlockFlag("block", *blockS)
	if err != nil {
		return "", err
	}
	defer clear(block)
	var pin pinblock.SecretPIN
	if f == pinblock.Format2 {
		if *keyS != "" {
			return "", fmt.Errorf("%w: format 2 blocks are never enciphered: drop --key", errUsage)
		}
		pin, err = pinblock.DecodeClear(f, block, *pan)
	} else {
		var k pinblock.Key
		if k, err = pinKeyFlag("key", f, *keyS); err != nil {
			return "", err
		}
		defer k.Zeroize()
		pin, err = pinblock.Decipher(f, block, *pan, k)
	}
	if err != nil {
		return "", err
	}
	defer pin.Zeroize()
	return pin.Reveal(), nil
}

// pinTranslate: --pan --block --from-format --from-key --to-format --to-key
// -> the new block in upper hex.
func pinTranslate(args []string) (string, error) {
	fs := newFlagSet("pin translate")
	pan := fs.String("pan", "", "PAN; it does not change")
	blockS := secretString(fs, "block", "source PIN block in hex")
	fromS := fs.String("from-format", "", "source format 0-4")
	fromKeyS := secretString(fs, "from-key", "source PIN key in hex")
	toS := fs.String("to-format", "", "destination format 0-4")
	toKeyS := secretString(fs, "to-key", "destination PIN key in hex")
	if err := parseFlags(fs, args); err != nil {
		return "", err
	}
	from, err := pinFormatFlag("from-format", *fromS)
	if err != nil {
		return "", err
	}
	to, err := pinFormatFlag("to-format", *toS)
	if err != nil {
		return "", err
	}
	if !pinblock.TranslationAllowed(from, to) {
		return "", fmt.Errorf("%w: %s to %s", pinblock.ErrForbiddenTranslation, from, to)
	}
	if err := needPAN(from, *pan); err != nil {
		return "", err
	}
	if err := needPAN(to, *pan); err != nil {
		return "", err
	}
	block, err := pinBlockFlag("block", *blockS)
	if err != nil {
		return "", err
	}
	fk, err := pinKeyFlag("from-key", from, *fromKeyS)
	if err != nil {
		return "", err
	}
	defer fk.Zeroize()
	tk, err := pinKeyFlag("to-key", to, *toKeyS)
	if err != nil {
		return "", err
	}
	defer tk.Zeroize()
	out, err := pinblock.TranslateBlock(block, *pan, fk, from, tk, to)
	if err != nil {
		return "", err
	}
	return strings.ToUpper(hex.EncodeToString(out)), nil
}

func pinFormatFlag(name, v string) (pinblock.Format, error) {
	if v == "" {
		return 0, fmt.Errorf("%w: --%s is required", errUsage, name)
	}
	f, err := pinblock.ParseFormat(v)
	if err != nil {
		return 0, fmt.Errorf("%w: --%s: %v", errUsage, name, err)
	}
	return f, nil
}

// needPAN requires a PAN for the formats that bind one (0, 3, 4).
func needPAN(f pinblock.Format, pan string) error {
	if pan == "" && (f == pinblock.Format0 || f == pinblock.Format3 || f == pinblock.Format4) {
		return fmt.Errorf("%w: --pan is required for %s", errUsage, f)
	}
	return nil
}

// pinKeyFlag parses a clear hex PIN key of the algorithm format f needs; the
// error never repeats the key.
func pinKeyFlag(name string, f pinblock.Format, v string) (pinblock.Key, error) {
	if v == "" {
		return pinblock.Key{}, fmt.Errorf("%w: --%s is required for %s", errUsage, name, f)
	}
	k, err := pinblock.ParseHexKey("cli-"+name, pinblock.UsageZPK, f.Algorithm(), 1, v)
	if err != nil {
		return pinblock.Key{}, fmt.Errorf("--%s: %w", name, err)
	}
	return k, nil
}

// pinBlockFlag decodes a hex PIN block; the error never repeats it.
func pinBlockFlag(name, v string) ([]byte, error) {
	if v == "" {
		return nil, fmt.Errorf("%w: --%s is required", errUsage, name)
	}
	b, err := hex.DecodeString(strings.TrimSpace(v))
	if err != nil {
		return nil, fmt.Errorf("%w: --%s: %w: not hexadecimal", errUsage, name, pinblock.ErrInvalidPINBlock)
	}
	return b, nil
}
