package main

import (
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"pingate/cmd/internal/cli"
	"pingate/integration/gateway"
	"pingate/integration/payshield"
	"pingate/pinblock"
	"pingate/pinblock/keystore"
)

// runHSMKey runs a key ceremony through the HSMs of a config with
// security.module payshield: the keys exist in clear only inside the HSM;
// the key file gets their LMK tokens and the custody log (security.custody_log,
// when set) the same records `pingate key` writes.
//
//	pingate hsm-key generate --config F --id ID --usage ZPK [--length 16] [--export-under ZMK] --who W --why Y
//	pingate hsm-key import   --config F --id ID --usage ZPK --zmk ZMK --key-under-zmk HEX --kcv KCV [--rotate] --who W --why Y
//	pingate hsm-key combine  --config F --id ID [--usage ZMK] --component -|@FILE --kcv KCV (2 to 9 times) [--rotate] --who W --why Y
//	pingate hsm-key kcv      --config F --id ID
//	pingate hsm-key list     --config F
type hsmKeyCmd struct {
	Generate hsmKeyGenerateCmd `cmd:"" help:"generate a key in the HSM (its LMK token into the key file)"`
	Import   hsmKeyImportCmd   `cmd:"" help:"import a key enciphered under a held ZMK"`
	Combine  hsmKeyCombineCmd  `cmd:"" help:"form a key (a ZMK by default) in the HSM from 2 to 9 components under its LMK (A4)"`
	KCV      hsmKeyKCVCmd      `cmd:"" name:"kcv" help:"print a held key's check value, computed by the HSM"`
	List     hsmKeyListCmd     `cmd:"" help:"list the held keys: id usage version KCV"`
}

// hsmKeyConfig is the flag every hsm-key command takes.
type hsmKeyConfig struct {
	Config string `name:"config" placeholder:"FILE" help:"YAML config with security.module payshield (required)"`
}

type hsmKeyID struct {
	ID string `name:"id" help:"key id (required)"`
}

type hsmKeyGenerateCmd struct {
	hsmKeyConfig `embed:""`
	hsmKeyID     `embed:""`
	custodyFlags `embed:""`
	Usage        string `name:"usage" help:"ZMK, ZPK, TPK, PVK or TAK"`
	Length       int    `name:"length" default:"16" help:"key length in bytes: 16 or 24"`
	ExportUnder  string `name:"export-under" placeholder:"ZMK" help:"also print the key under this held ZMK, for the other zone"`
}

func (*hsmKeyGenerateCmd) Help() string {
	return cli.Example("pingate hsm-key generate --config pingate.yaml --id zpk-acq1 --usage ZPK --export-under zmk-acq1 --who alice --why 'new ZPK'")
}

func (c *hsmKeyGenerateCmd) Run(env *cli.Env) error {
	return runHSMKey(env, "generate", hsmKeyOpts{config: c.Config, id: c.ID, usage: c.Usage, length: c.Length, exportUnder: c.ExportUnder, who: c.Who, why: c.Why})
}

type hsmKeyImportCmd struct {
	hsmKeyConfig `embed:""`
	hsmKeyID     `embed:""`
	custodyFlags `embed:""`
	Usage        string `name:"usage" help:"ZMK, ZPK, TPK, PVK or TAK"`
	ZMK          string `name:"zmk" help:"the held ZMK the key is enciphered under"`
	KeyUnderZMK  string `name:"key-under-zmk" placeholder:"HEX" help:"the key under the ZMK, hex (TDES-ECB)"`
	KeyBlock     string `name:"key-block" placeholder:"S…" help:"instead of --key-under-zmk: the key as a Thales key block (S) under the ZMK, on a key-block LMK (TR-31 blocks are refused: docs/hsm.md)"`
	KCV          string `name:"kcv" help:"the key's check value"`
	Rotate       bool   `name:"rotate" help:"the next version of a held id"`
}

func (*hsmKeyImportCmd) Help() string {
	return cli.Example("pingate hsm-key import --config pingate.yaml --id zpk-acq1 --usage ZPK --zmk zmk-acq1 --key-under-zmk 0123…CDEF --kcv 08D7B4 --who alice --why 'ZPK from acquirer 1'")
}

func (c *hsmKeyImportCmd) Run(env *cli.Env) error {
	return runHSMKey(env, "import", hsmKeyOpts{config: c.Config, id: c.ID, usage: c.Usage, zmk: c.ZMK, under: c.KeyUnderZMK, block: c.KeyBlock, kcv: c.KCV, rotate: c.Rotate, who: c.Who, why: c.Why, length: 16})
}

type hsmKeyCombineCmd struct {
	hsmKeyConfig `embed:""`
	hsmKeyID     `embed:""`
	custodyFlags `embed:""`
	Usage        string            `name:"usage" default:"ZMK" help:"usage of the formed key: ZMK, ZPK, TPK, PVK or TAK"`
	Component    cli.SecretRefList `name:"component" placeholder:"-|@FILE" help:"a custodian's component enciphered under the HSM's LMK (U or T token, or a key block S… on a key-block LMK, as the HSM's console encrypts a clear component): - for a line of standard input, or @FILE; repeat 2 to 9 times"`
	KCV          []string          `name:"kcv" sep:"none" help:"check value of each component as its custodian read it, in the same order"`
	Rotate       bool              `name:"rotate" help:"the next version of a held id"`
}

func (*hsmKeyCombineCmd) Help() string {
	return cli.Example("pingate hsm-key combine --config pingate.yaml --id zmk-acq1 --component - --kcv 4A1C2E --component - --kcv 77F0D1 --component - --kcv 0C2B11 --who 'alice,bob,carol' --why 'ZMK ceremony'")
}

func (c *hsmKeyCombineCmd) Run(env *cli.Env) error {
	return runHSMKey(env, "combine", hsmKeyOpts{config: c.Config, id: c.ID, usage: c.Usage, components: c.Component.Values(), kcvs: c.KCV, rotate: c.Rotate, who: c.Who, why: c.Why, length: 16})
}

type hsmKeyKCVCmd struct {
	hsmKeyConfig `embed:""`
	hsmKeyID     `embed:""`
}

func (*hsmKeyKCVCmd) Help() string {
	return cli.Example("pingate hsm-key kcv --config pingate.yaml --id zpk-acq1")
}

func (c *hsmKeyKCVCmd) Run(env *cli.Env) error {
	return runHSMKey(env, "kcv", hsmKeyOpts{config: c.Config, id: c.ID, length: 16})
}

type hsmKeyListCmd struct {
	hsmKeyConfig `embed:""`
}

func (*hsmKeyListCmd) Help() string { return cli.Example("pingate hsm-key list --config pingate.yaml") }

func (c *hsmKeyListCmd) Run(env *cli.Env) error {
	return runHSMKey(env, "list", hsmKeyOpts{config: c.Config, length: 16})
}

// hsmKeyOpts are the flags of the hsm-key commands, together.
type hsmKeyOpts struct {
	config, id, usage, exportUnder, zmk, under, block, kcv, who, why string
	length                                                           int
	rotate                                                           bool
	components, kcvs                                                 []string
}

// runHSMKey runs a key ceremony through the HSMs of a config with
// security.module payshield: the keys exist in clear only inside the HSM;
// the key file gets their LMK tokens and the custody log (security.custody_log,
// when set) the same records `pingate key` writes.
func runHSMKey(env *cli.Env, sub string, o hsmKeyOpts) error {
	ctx, stdout := env.Ctx, env.Stdout
	cfgPath, id, usage, length, exportUnder := &o.config, &o.id, &o.usage, &o.length, &o.exportUnder
	zmk, under, kcv, rotate, who, why := &o.zmk, &o.under, &o.kcv, &o.rotate, &o.who, &o.why
	if *cfgPath == "" {
		return fmt.Errorf("%w: --config is required", errUsage)
	}
	cfg, err := gateway.LoadConfig(*cfgPath)
	if err != nil {
		return err
	}
	sec := cfg.WithDefaults().Security
	if sec.Module != "payshield" || sec.PayShield.KeyFile == "" {
		return fmt.Errorf("%w: %s: needs security.module payshield and security.payshield.key_file", errUsage, *cfgPath)
	}
	keys := payshield.NewKeys(sec.RotationGrace)
	if _, err := os.Stat(sec.PayShield.KeyFile); err == nil {
		if keys, err = gateway.PayShieldKeys(gateway.SecurityConfig{PayShield: sec.PayShield, RotationGrace: sec.RotationGrace}, slog.New(slog.DiscardHandler)); err != nil {
			return err
		}
	}
	if sub == "list" {
		for _, k := range keys.List() {
			blk := ""
			if h, ok := k.BlockHeader(); ok { // under a key-block LMK: what the HSM enforces
				blk = fmt.Sprintf(" key-block usage=%s mode=%c exportability=%c lmk=%s", h.KeyUsage, h.ModeOfUse, h.Exportability, h.LMKID)
			}
			fmt.Fprintf(stdout, "%s v%d %s %s kcv=%s%s\n", k.ID, k.Version, k.Usage, k.Algorithm, k.KCV, blk)
		}
		return nil
	}
	if *id == "" {
		return fmt.Errorf("%w: --id is required", errUsage)
	}
	pc, err := sec.PayShield.Client(slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	pc.HealthInterval = -1
	c, err := payshield.New(pc)
	if err != nil {
		return err
	}
	defer c.Close()
	m := payshield.NewModule(c, keys)
	if sub == "kcv" {
		k, err := keys.Lookup(pinblock.KeyRef{ID: *id})
		if err != nil {
			return err
		}
		got, err := m.KCV(ctx, pinblock.KeyRef{ID: *id})
		if err != nil {
			return err
		}
		if !strings.EqualFold(got, k.KCV[:min(len(k.KCV), len(got))]) {
			return fmt.Errorf("%w: %s: the HSM computes %s, the key file says %s", pinblock.ErrKCVMismatch, *id, got, k.KCV)
		}
		fmt.Fprintf(stdout, "%s v%d kcv=%s (the HSM agrees)\n", k.ID, k.Version, got)
		return nil
	}
	if *who == "" || *why == "" {
		return fmt.Errorf("%w: --who and --why are required (custody log)", errUsage)
	}
	if err := keystore.ValidKeyID(*id); err != nil {
		return fmt.Errorf("%w: --id: %w", errUsage, err)
	}
	if err := keystore.CheckCustodyText(*who, *why, *id, *zmk, *exportUnder); err != nil {
		return fmt.Errorf("%w: --who, --why, --id, --zmk, --export-under: %w", errUsage, err)
	}
	if sec.CustodyLog == "" {
		// --who and --why would be recorded nowhere: a ceremony without
		// its custody record is a handover no one can account for.
		return fmt.Errorf("%w: %s: hsm-key %s needs security.custody_log: every ceremony is recorded there", errUsage, *cfgPath, sub)
	}
	// Opened (and its chain checked) before the HSM acts: a log that cannot
	// take the record stops the ceremony while nothing has happened.
	l, err := keystore.OpenCustodyLog(sec.CustodyLog)
	if err != nil {
		return err
	}
	defer l.Close()
	u, err := parseUsage(*usage)
	if err != nil {
		return err
	}
	var (
		info     pinblock.KeyInfo
		action   = keystore.ActionGenerate
		from     = "lmk"
		compKCVs []string
	)
	switch sub {
	case "generate":
		if *exportUnder != "" {
			var enc []byte
			info, enc, err = m.GenerateExport(ctx, *id, u, *length, pinblock.KeyRef{ID: *exportUnder})
			if err == nil {
				fmt.Fprintf(stdout, "key under %s: %X\n", *exportUnder, enc)
			}
		} else {
			info, err = m.Generate(ctx, *id, u, pinblock.TDES, *length)
		}
	case "import":
		action, from = keystore.ActionImport, *zmk
		if *rotate {
			action = keystore.ActionRotate
		}
		if (*under == "") == (o.block == "") {
			return fmt.Errorf("%w: give one of --key-under-zmk and --key-block", errUsage)
		}
		if *zmk == "" || *kcv == "" {
			return fmt.Errorf("%w: --zmk and --kcv are required", errUsage)
		}
		enc, herr := hex.DecodeString(*under)
		if herr != nil {
			return fmt.Errorf("%w: --key-under-zmk is not hexadecimal", errUsage)
		}
		info, err = m.Import(ctx, pinblock.ImportRequest{ID: *id, Usage: u, Algorithm: pinblock.TDES, Enciphered: enc, KeyBlock: o.block,
			ZMK: pinblock.KeyRef{ID: *zmk}, KCV: *kcv, Who: *who, Why: *why, Rotate: *rotate})
	case "combine":
		action, from = keystore.ActionCombine, keystore.UnderComponents
		if *rotate {
			action = keystore.ActionRotate
		}
		if len(o.components) != len(o.kcvs) {
			return fmt.Errorf("%w: give one --kcv per --component (%d components, %d KCVs)", errUsage, len(o.components), len(o.kcvs))
		}
		info, compKCVs, err = m.FormKey(ctx, payshield.FormRequest{ID: *id, Usage: u, Components: o.components, KCVs: o.kcvs, Rotate: *rotate})
		for i, k := range compKCVs {
			fmt.Fprintf(stdout, "component %d kcv=%s (the HSM agrees)\n", i+1, k)
		}
	default:
		return fmt.Errorf("%w: hsm-key %s: want generate, import, combine, kcv or list", errUsage, sub)
	}
	if err != nil {
		return err
	}
	if err := payshield.SaveKeyFile(sec.PayShield.KeyFile, keys.List()); err != nil {
		return err
	}
	recs := []keystore.CustodyRecord{{Who: *who, Why: *why, Action: action, KeyID: info.ID, Usage: info.Usage,
		Version: info.Version, KCV: info.KCV, Under: from, ComponentKCVs: compKCVs}}
	if sub == "generate" && *exportUnder != "" {
		// The key also left under the ZMK, to the other zone: a
		// handover of its own, as `pingate key export-tr31` records it.
		recs = append(recs, keystore.CustodyRecord{Who: *who, Why: *why, Action: keystore.ActionExport, KeyID: info.ID,
			Usage: info.Usage, Version: info.Version, KCV: info.KCV, Under: *exportUnder})
	}
	for _, r := range recs {
		if _, err = l.Append(r); err != nil {
			break
		}
	}
	if cerr := l.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("custody log: %w (the key is in the key file)", err)
	}
	fmt.Fprintf(stdout, "%s v%d %s kcv=%s\n", info.ID, info.Version, info.Usage, info.KCV)
	return nil
}
