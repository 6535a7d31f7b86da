package main

import (
	"encoding/hex"
	"fmt"
	"strings"

	"pingate/cmd/internal/cli"
	"pingate/pinblock"
)

// pinCmd is "pingate pin encode|decode|translate". Keys are given in clear
// hex (on the command line, from a file or from standard input: see
// cli.Secret), so this is a tool for test data and simulation, never for
// live keys. The result alone is printed on stdout.
type pinCmd struct {
	Encode    pinEncodeCmd    `cmd:"" help:"encode (and encipher) a PIN block"`
	Decode    pinDecodeCmd    `cmd:"" help:"decipher a PIN block and print the clear PIN (reveals the PIN: test data only)"`
	Translate pinTranslateCmd `cmd:"" help:"translate a PIN block from one key and format to another"`
}

const pinFormatHelp = "ISO 9564-1 format 0-4 (or SM4-0, SM4-4)"

// pinEncodeCmd: the block in upper hex (enciphered; the clear block for
// format 2).
type pinEncodeCmd struct {
	Format string     `name:"format" placeholder:"N" help:"${pinformat} (required)"`
	Alg    string     `name:"alg" help:"${pinalg}"`
	PIN    cli.Secret `name:"pin" placeholder:"PIN|@FILE|-" help:"clear PIN, 4-12 digits; or @FILE, or - for a line of standard input"`
	PAN    string     `name:"pan" help:"PAN (formats 0, 3, 4)"`
	Key    cli.Secret `name:"key" placeholder:"HEX|@FILE|-" help:"PIN key in hex: TDES for formats 0, 1, 3; AES for 4; SM4 with --alg sm4; none for 2; or @FILE, or -"`
}

func (*pinEncodeCmd) Help() string {
	return cli.Example("pingate-dev pin encode --format 0 --pin - --pan 4111111111111111 --key @zpk.hex")
}

func (c *pinEncodeCmd) Run(env *cli.Env) error {
	f, err := pinFormatFlag("format", c.Format, "alg", c.Alg)
	if err != nil {
		return err
	}
	if err := needPAN(f, c.PAN); err != nil {
		return err
	}
	pin, err := pinblock.NewSecretPIN(c.PIN.Value())
	if err != nil {
		return err
	}
	defer pin.Zeroize()
	if f == pinblock.Format2 {
		if c.Key.Value() != "" {
			return fmt.Errorf("%w: format 2 blocks are never enciphered: drop --key", errUsage)
		}
		b, err := pinblock.EncodeClear(f, pin, c.PAN)
		if err != nil {
			return err
		}
		defer clear(b)
		return env.Result(strings.ToUpper(hex.EncodeToString(b)), nil)
	}
	k, err := pinKeyFlag("key", f, c.Key.Value())
	if err != nil {
		return err
	}
	defer k.Zeroize()
	b, err := pinblock.Encipher(f, pin, c.PAN, k)
	if err != nil {
		return err
	}
	return env.Result(strings.ToUpper(hex.EncodeToString(b)), nil)
}

// pinDecodeCmd: the PIN.
type pinDecodeCmd struct {
	Format string     `name:"format" placeholder:"N" help:"${pinformat} (required)"`
	Alg    string     `name:"alg" help:"${pinalg}"`
	PAN    string     `name:"pan" help:"PAN (formats 0, 3, 4)"`
	Key    cli.Secret `name:"key" placeholder:"HEX|@FILE|-" help:"PIN key in hex (none for format 2); or @FILE, or -"`
	Block  cli.Secret `name:"block" placeholder:"HEX|@FILE|-" help:"PIN block in hex; or @FILE, or - (required)"`
}

func (*pinDecodeCmd) Help() string {
	return cli.Example("pingate-dev pin decode --format 4 --pan 4111111111111111 --key @zpk-aes.hex --block -")
}

func (c *pinDecodeCmd) Run(env *cli.Env) error {
	f, err := pinFormatFlag("format", c.Format, "alg", c.Alg)
	if err != nil {
		return err
	}
	if err := needPAN(f, c.PAN); err != nil {
		return err
	}
	block, err := pinBlockFlag("block", c.Block.Value())
	if err != nil {
		return err
	}
	defer clear(block)
	var pin pinblock.SecretPIN
	if f == pinblock.Format2 {
		if c.Key.Value() != "" {
			return fmt.Errorf("%w: format 2 blocks are never enciphered: drop --key", errUsage)
		}
		pin, err = pinblock.DecodeClear(f, block, c.PAN)
	} else {
		var k pinblock.Key
		if k, err = pinKeyFlag("key", f, c.Key.Value()); err != nil {
			return err
		}
		defer k.Zeroize()
		pin, err = pinblock.Decipher(f, block, c.PAN, k)
	}
	if err != nil {
		return err
	}
	defer pin.Zeroize()
	return env.Result(pin.Reveal(), nil)
}

// pinTranslateCmd: the new block in upper hex. --alg sets the cipher of both
// sides; --from-alg and --to-alg override it.
type pinTranslateCmd struct {
	PAN        string     `name:"pan" help:"PAN; it does not change"`
	Block      cli.Secret `name:"block" placeholder:"HEX|@FILE|-" help:"source PIN block in hex; or @FILE, or - (required)"`
	FromFormat string     `name:"from-format" placeholder:"N" help:"source format 0-4 (or SM4-0, SM4-4) (required)"`
	FromAlg    string     `name:"from-alg" help:"source cipher (default --alg); ${pinalg}"`
	FromKey    cli.Secret `name:"from-key" placeholder:"HEX|@FILE|-" help:"source PIN key in hex; or @FILE, or - (required)"`
	ToFormat   string     `name:"to-format" placeholder:"N" help:"destination format 0-4 (or SM4-0, SM4-4) (required)"`
	ToAlg      string     `name:"to-alg" help:"destination cipher (default --alg); ${pinalg}"`
	ToKey      cli.Secret `name:"to-key" placeholder:"HEX|@FILE|-" help:"destination PIN key in hex; or @FILE, or - (required)"`
	Alg        string     `name:"alg" help:"cipher of both sides; ${pinalg}"`
}

func (*pinTranslateCmd) Help() string {
	return cli.Example("pingate-dev pin translate --pan 4111111111111111 --block - --from-format 0 --from-key @tpk.hex --to-format 4 --to-key @zpk-aes.hex")
}

func (c *pinTranslateCmd) Run(env *cli.Env) error {
	fromAlg, toAlg := c.FromAlg, c.ToAlg
	fromAlgName, toAlgName := "from-alg", "to-alg"
	if fromAlg == "" {
		fromAlg, fromAlgName = c.Alg, "alg"
	}
	if toAlg == "" {
		toAlg, toAlgName = c.Alg, "alg"
	}
	from, err := pinFormatFlag("from-format", c.FromFormat, fromAlgName, fromAlg)
	if err != nil {
		return err
	}
	to, err := pinFormatFlag("to-format", c.ToFormat, toAlgName, toAlg)
	if err != nil {
		return err
	}
	if !pinblock.TranslationAllowed(from, to) {
		return fmt.Errorf("%w: %s to %s", pinblock.ErrForbiddenTranslation, from, to)
	}
	if err := needPAN(from, c.PAN); err != nil {
		return err
	}
	if err := needPAN(to, c.PAN); err != nil {
		return err
	}
	block, err := pinBlockFlag("block", c.Block.Value())
	if err != nil {
		return err
	}
	fk, err := pinKeyFlag("from-key", from, c.FromKey.Value())
	if err != nil {
		return err
	}
	defer fk.Zeroize()
	tk, err := pinKeyFlag("to-key", to, c.ToKey.Value())
	if err != nil {
		return err
	}
	defer tk.Zeroize()
	out, err := pinblock.TranslateBlock(block, c.PAN, fk, from, tk, to)
	if err != nil {
		return err
	}
	return env.Result(strings.ToUpper(hex.EncodeToString(out)), nil)
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
