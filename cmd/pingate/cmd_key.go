package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"pingate/pinblock"
)

// The key custody commands (docs/key-custody.md). Every change to the store
// needs --who and --why, which go into the custody log. Key material (a
// clear key, a key enciphered under a ZMK, a component) is read only from
// standard input ("-") or a file ("@FILE"), never taken from the command line,
// and never printed back; results are ids, versions and KCVs.

func init() {
	register(command{
		name:  "key",
		usage: "key custody: kcv, lmk-generate, init, import, import-tr31, combine, generate, rotate, remove, export-tr31, list, log verify, log migrate",
		run:   runKey,
	})
}

const keyUsageText = "key kcv|lmk-generate|init|import|import-tr31|combine|generate|rotate|remove|export-tr31|list|log verify|log migrate [flags]"

func runKey(_ context.Context, args []string, stdout, _ io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: %s", errUsage, keyUsageText)
	}
	sub, rest := args[0], args[1:]
	var (
		out string
		err error
	)
	switch sub {
	case "kcv":
		out, err = keyKCV(rest)
	case "lmk-generate":
		out, err = keyLMKGenerate(rest)
	case "init":
		out, err = keyInit(rest)
	case "import":
		out, err = keyImport(rest)
	case "import-tr31":
		out, err = keyImportTR31(rest)
	case "combine":
		out, err = keyCombine(rest)
	case "generate":
		out, err = keyGenerate(rest)
	case "rotate":
		out, err = keyRotate(rest)
	case "remove":
		out, err = keyRemove(rest)
	case "export-tr31":
		out, err = keyExport(rest)
	case "list":
		out, err = keyList(rest)
	case "log":
		switch {
		case len(rest) > 0 && rest[0] == "verify":
			out, err = keyLogVerify(rest[1:])
		case len(rest) > 0 && rest[0] == "migrate":
			out, err = keyLogMigrate(rest[1:])
		default:
			return fmt.Errorf("%w: key log verify --log FILE [--store FILE --lmk-file F | --lmk-env VAR], or key log migrate --store FILE --log FILE --lmk-file F --who --why", errUsage)
		}
	default:
		return fmt.Errorf("%w: unknown key command %q: %s", errUsage, sub, keyUsageText)
	}
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, out)
	return nil
}

// storeFlags are the flags that open the key store.
type storeFlags struct {
	store, lmkFile, lmkEnv, log string
	who, why                    string
	grace                       time.Duration
}

func (sf *storeFlags) register(fs *flag.FlagSet, custody bool) {
	fs.StringVar(&sf.store, "store", "", "key store file")
	fs.StringVar(&sf.lmkFile, "lmk-file", "", "file holding the LMK")
	fs.StringVar(&sf.lmkEnv, "lmk-env", "", "environment variable holding the LMK")
	fs.StringVar(&sf.log, "log", "", "custody log file")
	fs.DurationVar(&sf.grace, "grace", pinblock.DefaultGrace, "how long a rotated-out version stays usable")
	if custody {
		fs.StringVar(&sf.who, "who", "", "who does this (recorded)")
		fs.StringVar(&sf.why, "why", "", "why (recorded)")
	}
}

func (sf *storeFlags) check() error {
	switch {
	case sf.store == "" || sf.log == "":
		return fmt.Errorf("%w: --store and --log are required", errUsage)
	case (sf.lmkFile == "") == (sf.lmkEnv == ""):
		return fmt.Errorf("%w: give exactly one of --lmk-file and --lmk-env", errUsage)
	}
	return nil
}

func (sf *storeFlags) config() pinblock.StoreConfig {
	return pinblock.StoreConfig{
		Path: sf.store, LogPath: sf.log, Grace: sf.grace,
		LMK: pinblock.LMKRef{File: sf.lmkFile, Env: sf.lmkEnv},
	}
}

// open opens an existing store (pinblock.ErrNoStore when there is none:
// see key init).
func (sf *storeFlags) open() (*pinblock.Store, error) {
	if err := sf.check(); err != nil {
		return nil, err
	}
	return pinblock.OpenStore(sf.config())
}

func (sf *storeFlags) custodian() (pinblock.Custodian, error) {
	if strings.TrimSpace(sf.who) == "" || strings.TrimSpace(sf.why) == "" {
		return pinblock.Custodian{}, fmt.Errorf("%w: --who and --why are required: they go into the custody log", errUsage)
	}
	return pinblock.Custodian{Who: sf.who, Why: sf.why}, nil
}

// listFlag collects a repeated flag.
type listFlag []string

func (l *listFlag) String() string     { return fmt.Sprint(len(*l)) } // never the values: they may be components
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func infoLine(i pinblock.KeyInfo) string {
	return fmt.Sprintf("%s %s v%d %s", i.ID, i.Usage, i.Version, i.KCV)
}

func parseUsage(s string) (pinblock.Usage, error) {
	u := pinblock.Usage(strings.ToUpper(s))
	if !u.Valid() || u == pinblock.UsageLMK {
		return "", fmt.Errorf("%w: --usage %q: want ZMK, ZPK, TPK, TAK or PVK", errUsage, s)
	}
	return u, nil
}

func parseAlg(s string) (pinblock.Algorithm, error) {
	a, err := pinblock.ParseAlgorithm(s)
	if err != nil {
		return "", fmt.Errorf("%w: --alg %q: want tdes, aes or sm4", errUsage, s)
	}
	return a, nil
}

// keyKCV: key kcv --key -|@FILE --alg tdes|aes|sm4.
func keyKCV(args []string) (string, error) {
	fs := newFlagSet("key kcv")
	keyHex := secretRef(fs, "key", "clear key (hex)")
	alg := fs.String("alg", "tdes", "tdes, aes or sm4")
	if err := parseFlags(fs, args); err != nil {
		return "", err
	}
	a, err := parseAlg(*alg)
	if err != nil {
		return "", err
	}
	if *keyHex == "" {
		return "", fmt.Errorf("%w: --key is required", errUsage)
	}
	k, err := pinblock.ParseHexKey("kcv", pinblock.UsageZMK, a, 1, *keyHex)
	if err != nil {
		return "", err
	}
	defer k.Zeroize()
	return k.KCV(), nil
}

// keyLMKGenerate: key lmk-generate --out FILE [--alg aes|tdes].
func keyLMKGenerate(args []string) (string, error) {
	fs := newFlagSet("key lmk-generate")
	out := fs.String("out", "", "file to create (mode 0600; never overwritten)")
	alg := fs.String("alg", "aes", "aes (AES-256) or tdes (triple-length)")
	if err := parseFlags(fs, args); err != nil {
		return "", err
	}
	if *out == "" {
		return "", fmt.Errorf("%w: --out is required", errUsage)
	}
	a, err := parseAlg(*alg)
	if err != nil {
		return "", err
	}
	return pinblock.WriteLMKFile(*out, a)
}

// keyInit: key init --store FILE --log FILE --lmk-file F|--lmk-env VAR.
// Creating a store is explicit: every other command refuses a store file
// that does not exist, and init refuses a custody log that has records.
func keyInit(args []string) (string, error) {
	var sf storeFlags
	fs := newFlagSet("key init")
	sf.register(fs, false)
	if err := parseFlags(fs, args); err != nil {
		return "", err
	}
	if err := sf.check(); err != nil {
		return "", err
	}
	s, err := pinblock.InitStore(sf.config())
	if err != nil {
		return "", err
	}
	defer s.Close()
	return fmt.Sprintf("created key store %s (LMK %s), custody log %s", sf.store, s.LMKKCV(), sf.log), nil
}

// keyImport: key import --id --usage --alg --under ZMK --key -|@FILE --kcv KCV.
func keyImport(args []string) (string, error) {
	var sf storeFlags
	fs := newFlagSet("key import")
	sf.register(fs, true)
	id := fs.String("id", "", "key id")
	usage := fs.String("usage", "", "ZPK, TPK, TAK, PVK or ZMK")
	alg := fs.String("alg", "tdes", "tdes, aes or sm4")
	under := fs.String("under", "", "id of the ZMK the key is enciphered under")
	keyHex := secretRef(fs, "key", "the key enciphered under the ZMK (hex)")
	kcv := fs.String("kcv", "", "the key's check value")
	if err := parseFlags(fs, args); err != nil {
		return "", err
	}
	c, err := sf.custodian()
	if err != nil {
		return "", err
	}
	u, err := parseUsage(*usage)
	if err != nil {
		return "", err
	}
	a, err := parseAlg(*alg)
	if err != nil {
		return "", err
	}
	if *id == "" || *under == "" || *keyHex == "" || *kcv == "" {
		return "", fmt.Errorf("%w: --id, --under, --key and --kcv are required", errUsage)
	}
	enc, err := hex.DecodeString(strings.TrimSpace(*keyHex))
	if err != nil {
		return "", fmt.Errorf("%w: --key is not hexadecimal", errUsage)
	}
	s, err := sf.open()
	if err != nil {
		return "", err
	}
	defer s.Close()
	info, err := s.ImportUnderZMK(pinblock.ImportRequest{ID: *id, Usage: u, Algorithm: a, Enciphered: enc, ZMK: pinblock.KeyRef{ID: *under}, KCV: *kcv, Who: c.Who, Why: c.Why})
	if err != nil {
		return "", err
	}
	return infoLine(info), nil
}

// keyImportTR31: key import-tr31 --id --under ZMK --block TEXT [--usage U].
func keyImportTR31(args []string) (string, error) {
	var sf storeFlags
	fs := newFlagSet("key import-tr31")
	sf.register(fs, true)
	id := fs.String("id", "", "key id")
	usage := fs.String("usage", "", "override the usage the block maps to (TPK for a P0 block)")
	under := fs.String("under", "", "id of the ZMK (KBPK) the block is made under")
	block := secretString(fs, "block", "the TR-31 key block")
	if err := parseFlags(fs, args); err != nil {
		return "", err
	}
	c, err := sf.custodian()
	if err != nil {
		return "", err
	}
	var u pinblock.Usage
	if *usage != "" {
		if u, err = parseUsage(*usage); err != nil {
			return "", err
		}
	}
	if *id == "" || *under == "" || *block == "" {
		return "", fmt.Errorf("%w: --id, --under and --block are required", errUsage)
	}
	s, err := sf.open()
	if err != nil {
		return "", err
	}
	defer s.Close()
	info, err := s.ImportTR31(pinblock.TR31ImportRequest{ID: *id, Usage: u, Block: strings.TrimSpace(*block), KBPK: *under, Custodian: c})
	if err != nil {
		return "", err
	}
	return infoLine(info), nil
}

// componentFlags reads --component/--kcv pairs.
func componentFlags(fs *flag.FlagSet) func() ([]pinblock.Component, error) {
	comps := secretList{name: "component"}
	var kcvs listFlag
	fs.Var(&comps, "component", "clear component (hex): - for a line of standard input, or @FILE (never the value itself); repeat 2 or 3 times")
	fs.Var(&kcvs, "kcv", "check value of each component, in the same order")
	return func() ([]pinblock.Component, error) {
		if len(comps.vs) == 0 {
			return nil, nil
		}
		if len(comps.vs) != len(kcvs) {
			return nil, fmt.Errorf("%w: give one --kcv per --component (%d components, %d KCVs)", errUsage, len(comps.vs), len(kcvs))
		}
		if len(comps.vs) < pinblock.MinComponents || len(comps.vs) > pinblock.MaxComponents {
			return nil, fmt.Errorf("%w: give %d to %d components, not %d", errUsage, pinblock.MinComponents, pinblock.MaxComponents, len(comps.vs))
		}
		out := make([]pinblock.Component, 0, len(comps.vs))
		for i := range comps.vs {
			c, err := pinblock.ParseComponent(comps.vs[i], kcvs[i])
			if err != nil {
				for _, o := range out {
					o.Zeroize()
				}
				return nil, fmt.Errorf("component %d: %w", i+1, err)
			}
			out = append(out, c)
		}
		return out, nil
	}
}

// keyCombine: key combine --id --alg --component -|@FILE --kcv KCV (2–3 times) [--usage ZMK].
func keyCombine(args []string) (string, error) {
	var sf storeFlags
	fs := newFlagSet("key combine")
	sf.register(fs, true)
	id := fs.String("id", "", "key id")
	alg := fs.String("alg", "tdes", "tdes, aes or sm4")
	usage := fs.String("usage", "ZMK", "usage of the combined key")
	comps := componentFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return "", err
	}
	c, err := sf.custodian()
	if err != nil {
		return "", err
	}
	u, err := parseUsage(*usage)
	if err != nil {
		return "", err
	}
	a, err := parseAlg(*alg)
	if err != nil {
		return "", err
	}
	if *id == "" {
		return "", fmt.Errorf("%w: --id is required", errUsage)
	}
	cs, err := comps()
	if err != nil {
		return "", err
	}
	if cs == nil {
		return "", fmt.Errorf("%w: give 2 or 3 --component/--kcv pairs", errUsage)
	}
	s, err := sf.open()
	if err != nil {
		for _, x := range cs {
			x.Zeroize()
		}
		return "", err
	}
	defer s.Close()
	info, err := s.CombineComponents(pinblock.CombineRequest{ID: *id, Usage: u, Algorithm: a, Components: cs, Custodian: c})
	if err != nil {
		return "", err
	}
	return infoLine(info), nil
}

// keyGenerate: key generate --id --usage --alg --length BYTES.
func keyGenerate(args []string) (string, error) {
	var sf storeFlags
	fs := newFlagSet("key generate")
	sf.register(fs, true)
	id := fs.String("id", "", "key id")
	usage := fs.String("usage", "", "ZPK, TPK, TAK, PVK or ZMK")
	alg := fs.String("alg", "aes", "tdes, aes or sm4")
	length := fs.Int("length", 0, "key length in bytes (TDES 16 or 24; AES 16, 24 or 32; SM4 16); default 16 for TDES and SM4, 32 for AES")
	if err := parseFlags(fs, args); err != nil {
		return "", err
	}
	c, err := sf.custodian()
	if err != nil {
		return "", err
	}
	u, err := parseUsage(*usage)
	if err != nil {
		return "", err
	}
	a, err := parseAlg(*alg)
	if err != nil {
		return "", err
	}
	if *id == "" {
		return "", fmt.Errorf("%w: --id is required", errUsage)
	}
	n := *length
	if n == 0 {
		n = map[pinblock.Algorithm]int{pinblock.TDES: 16, pinblock.AES: 32, pinblock.SM4: 16}[a]
	}
	s, err := sf.open()
	if err != nil {
		return "", err
	}
	defer s.Close()
	info, err := s.Generate(pinblock.GenerateRequest{ID: *id, Usage: u, Algorithm: a, Length: n, Custodian: c})
	if err != nil {
		return "", err
	}
	return infoLine(info), nil
}

// keyRotate: key rotate --id [--under ZMK (--key -|@FILE --kcv KCV | --block TEXT) | --component.. --kcv..].
// With no source, a random new version is generated.
func keyRotate(args []string) (string, error) {
	var sf storeFlags
	fs := newFlagSet("key rotate")
	sf.register(fs, true)
	id := fs.String("id", "", "key id")
	under := fs.String("under", "", "ZMK the new version is enciphered under (with --key and --kcv, or --block)")
	keyHex := secretRef(fs, "key", "new version enciphered under --under (hex)")
	block := secretString(fs, "block", "new version as a TR-31 key block under --under")
	comps := componentFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return "", err
	}
	c, err := sf.custodian()
	if err != nil {
		return "", err
	}
	if *id == "" {
		return "", fmt.Errorf("%w: --id is required", errUsage)
	}
	req := pinblock.RotateRequest{ID: *id, Custodian: c}
	// --kcv is shared: with --key it is the key's KCV, with --component
	// one per component.
	var kcvs []string
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "kcv" {
			kcvs = *(f.Value.(*listFlag))
		}
	})
	switch {
	case *keyHex != "" && *block != "":
		return "", fmt.Errorf("%w: give --key or --block, not both", errUsage)
	case *keyHex != "":
		if *under == "" || len(kcvs) != 1 {
			return "", fmt.Errorf("%w: --key needs --under and one --kcv", errUsage)
		}
		enc, err := hex.DecodeString(strings.TrimSpace(*keyHex))
		if err != nil {
			return "", fmt.Errorf("%w: --key is not hexadecimal", errUsage)
		}
		req.Enciphered, req.ZMK, req.KCV = enc, *under, kcvs[0]
	case *block != "":
		if *under == "" {
			return "", fmt.Errorf("%w: --block needs --under", errUsage)
		}
		req.Block, req.KBPK = strings.TrimSpace(*block), *under
	default:
		if req.Components, err = comps(); err != nil {
			return "", err
		}
		if req.Components == nil && len(kcvs) > 0 {
			return "", fmt.Errorf("%w: --kcv without --key or --component", errUsage)
		}
	}
	s, err := sf.open()
	if err != nil {
		for _, x := range req.Components {
			x.Zeroize()
		}
		return "", err
	}
	defer s.Close()
	info, err := s.Rotate(req)
	if err != nil {
		return "", err
	}
	return infoLine(info), nil
}

// keyRemove: key remove --id.
func keyRemove(args []string) (string, error) {
	var sf storeFlags
	fs := newFlagSet("key remove")
	sf.register(fs, true)
	id := fs.String("id", "", "key id")
	if err := parseFlags(fs, args); err != nil {
		return "", err
	}
	c, err := sf.custodian()
	if err != nil {
		return "", err
	}
	if *id == "" {
		return "", fmt.Errorf("%w: --id is required", errUsage)
	}
	s, err := sf.open()
	if err != nil {
		return "", err
	}
	defer s.Close()
	if err := s.Remove(*id, c); err != nil {
		return "", err
	}
	return "removed " + *id, nil
}

// keyExport: key export-tr31 --id --under ZMK → the key block.
func keyExport(args []string) (string, error) {
	var sf storeFlags
	fs := newFlagSet("key export-tr31")
	sf.register(fs, true)
	id := fs.String("id", "", "key id")
	under := fs.String("under", "", "ZMK to export under")
	if err := parseFlags(fs, args); err != nil {
		return "", err
	}
	c, err := sf.custodian()
	if err != nil {
		return "", err
	}
	if *id == "" || *under == "" {
		return "", fmt.Errorf("%w: --id and --under are required", errUsage)
	}
	s, err := sf.open()
	if err != nil {
		return "", err
	}
	defer s.Close()
	return s.ExportTR31(*id, *under, c)
}

// keyList: key list [--json]: id usage vN KCV, one per line.
func keyList(args []string) (string, error) {
	var sf storeFlags
	fs := newFlagSet("key list")
	sf.register(fs, false)
	asJSON := fs.Bool("json", false, "print a JSON array")
	if err := parseFlags(fs, args); err != nil {
		return "", err
	}
	s, err := sf.open()
	if err != nil {
		return "", err
	}
	defer s.Close()
	keys, err := s.List()
	if err != nil {
		return "", err
	}
	if *asJSON {
		b, err := json.Marshal(keys)
		if err != nil {
			return "", err
		}
		return string(b), nil
	}
	lines := make([]string, 0, len(keys))
	for _, k := range keys {
		lines = append(lines, infoLine(k.KeyInfo))
	}
	if len(lines) == 0 {
		return "no keys", nil
	}
	return strings.Join(lines, "\n"), nil
}

// keyLogMigrate: key log migrate --store --log --lmk-file --who --why. Keys
// a custody log written by an older pingate (records without a MAC).
func keyLogMigrate(args []string) (string, error) {
	var sf storeFlags
	fs := newFlagSet("key log migrate")
	sf.register(fs, true)
	if err := parseFlags(fs, args); err != nil {
		return "", err
	}
	c, err := sf.custodian()
	if err != nil {
		return "", err
	}
	if err := sf.check(); err != nil {
		return "", err
	}
	st, err := pinblock.MigrateCustodyLog(sf.config(), c)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("custody log keyed: ok %d records", st.Records), nil
}

// keyLogVerify: key log verify --log FILE [--store FILE --lmk-file F | --lmk-env VAR].
// With the store, records removed from the end of the log are caught too.
func keyLogVerify(args []string) (string, error) {
	var sf storeFlags
	fs := newFlagSet("key log verify")
	sf.register(fs, false)
	if err := parseFlags(fs, args); err != nil {
		return "", err
	}
	if sf.log == "" {
		return "", fmt.Errorf("%w: --log is required", errUsage)
	}
	if sf.store != "" {
		s, err := sf.open() // verifies the log against the store's head and tail
		if err != nil {
			return "", err
		}
		defer s.Close()
		st, err := s.CheckLog()
		if err != nil {
			return "", err
		}
		out := fmt.Sprintf("ok %d records", st.Records)
		if st.Pending > 0 {
			out += fmt.Sprintf("; %d more held in the key store, appended by the next change", st.Pending)
		}
		if st.TornBytes > 0 {
			out += fmt.Sprintf("; a torn last line (%d bytes, never a complete record) is cut back by the next change", st.TornBytes)
		}
		if st.Unacknowledged > 0 {
			out += fmt.Sprintf("; the last %d records were never acknowledged by the key store and are marked not applied by the next change", st.Unacknowledged)
		}
		return out, nil
	}
	head, err := pinblock.VerifyCustodyLog(sf.log)
	if err != nil {
		var ce *pinblock.CustodyError
		if errors.As(err, &ce) {
			return "", fmt.Errorf("custody log %s: first bad record at seq %d: %s", sf.log, ce.Seq, ce.Reason)
		}
		return "", err
	}
	return fmt.Sprintf("ok %d records", head.Seq), nil
}
