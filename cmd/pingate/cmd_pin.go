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
		usage: "encode, decode or translate an ISO 9564-1 PIN block, TDES, AES or SM4 (development and test tool)",
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

// pinEncode: --format N [--alg sm4] --pin P [--pan PAN] [--key HEX] -> the
// block in upper hex (enciphered; the clear block for format 2).
func pinEncode(args []string) (string, error) {
	fs := newFlagSet("pin encode")
	formatS := fs.String("format", "", "ISO 9564-1 format 0-4 (or SM4-0, SM4-4)")
	algS := fs.String("alg", "", algFlagHelp)
	pinS := secretString(fs, "pin", "clear PIN, 4-12 digits")
	pan := fs.String("pan", "", "PAN (formats 0, 3, 4)")
	keyS := secretString(fs, "key", "PIN key in hex: TDES for formats 0, 1, 3; AES for 4; SM4 with --alg sm4; none for 2")
	if err := parseFlags(fs, args); err != nil {
		return "", err
	}
	f, err := pinFormatFlag("format", *formatS, "alg", *algS)
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

// pinDecode: --format N [--alg sm4] [--pan PAN] [--key HEX] --block HEX ->
// the PIN.
func pinDecode(args []string) (string, error) {
	fs := newFlagSet("pin decode")
	formatS := fs.String("format", "", "ISO 9564-1 format 0-4 (or SM4-0, SM4-4)")
	algS := fs.String("alg", "", algFlagHelp)
	pan := fs.String("pan", "", "PAN (formats 0, 3, 4)")
	keyS := secretString(fs, "key", "PIN key in hex (none for format 2)")
	blockS := secretString(fs, "block", "PIN block in hex")
	if err := parseFlags(fs, args); err != nil {
		return "", err
	}
	f, err := pinFormatFlag("format", *formatS, "alg", *algS)
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

// pinTranslate: --pan --block --from-format [--from-alg] --from-key
// --to-format [--to-alg] --to-key [--alg] -> the new block in upper hex.
// --alg sets the cipher of both sides; --from-alg and --to-alg override it.
func pinTranslate(args []string) (string, error) {
	fs := newFlagSet("pin translate")
	pan := fs.String("pan", "", "PAN; it does not change")
	blockS := secretString(fs, "block", "source PIN block in hex")
	fromS := fs.String("from-format", "", "source format 0-4 (or SM4-0, SM4-4)")
	fromAlgS := fs.String("from-alg", "", "source cipher (default --alg); "+algFlagHelp)
	fromKeyS := secretString(fs, "from-key", "source PIN key in hex")
	toS := fs.String("to-format", "", "destination format 0-4 (or SM4-0, SM4-4)")
	toAlgS := fs.String("to-alg", "", "destination cipher (default --alg); "+algFlagHelp)
	toKeyS := secretString(fs, "to-key", "destination PIN key in hex")
	algS := fs.String("alg", "", "cipher of both sides; "+algFlagHelp)
	if err := parseFlags(fs, args); err != nil {
		return "", err
	}
	fromAlgName, toAlgName := "from-alg", "to-alg"
	if *fromAlgS == "" {
		*fromAlgS, fromAlgName = *algS, "alg"
	}
	if *toAlgS == "" {
		*toAlgS, toAlgName = *algS, "alg"
	}
	from, err := pinFormatFlag("from-format", *fromS, fromAlgName, *fromAlgS)
	if err != nil {
		return "", err
	}
	to, err := pinFormatFlag("to-format", *toS, toAlgName, *toAlgS)
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

const algFlagHelp = "cipher: tdes (formats 0, 1, 3), aes (4) or sm4 (0 and 4 as SM4-0 and SM4-4); default the format's own"

// pinFormatFlag parses the format flag name=v and, with the cipher flag
// algName=alg, the format it means: --format 4 --alg sm4 is SM4-4,
// --format 0 --alg sm4 SM4-0 (the 128-bit extension of format 0). alg ""
// leaves the format as given.
func pinFormatFlag(name, v, algName, alg string) (pinblock.Format, error) {
	if v == "" {
		return 0, fmt.Errorf("%w: --%s is required", errUsage, name)
	}
	f, err := pinblock.ParseFormat(v)
	if err != nil {
		return 0, fmt.Errorf("%w: --%s: %v", errUsage, name, err)
	}
	if alg == "" {
		return f, nil
	}
	a, err := pinblock.ParseAlgorithm(alg)
	if err != nil {
		return 0, fmt.Errorf("%w: --%s %q: want tdes, aes or sm4", errUsage, algName, alg)
	}
	if f.IsSM4() && a != pinblock.SM4 {
		return 0, fmt.Errorf("%w: --%s %s is an SM4 format, --%s is %s", errUsage, name, f, algName, a)
	}
	g, err := pinblock.FormatFor(f.Number(), a)
	if err != nil {
		return 0, fmt.Errorf("%w: --%s %s with --%s %s: %v", errUsage, name, v, algName, a, err)
	}
	return g, nil
}

// needPAN requires a PAN for the formats that bind one (0, 3, 4 and the SM4
// formats).
func needPAN(f pinblock.Format, pan string) error {
	if n := f.Number(); pan == "" && f != pinblock.Format2 && f != pinblock.Format1 && (n == 0 || n == 3 || n == 4) {
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
