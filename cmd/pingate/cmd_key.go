package main

import (
	"cmp"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"pingate/cmd/internal/cli"
	"pingate/pinblock"
	"pingate/pinblock/keystore"
)

// The key custody commands (docs/key-custody.md). Every change to the store
// needs --who and --why, which go into the custody log. Key material (a
// clear key, a key enciphered under a ZMK, a component) is read only from
// standard input ("-") or a file ("@FILE"), never taken from the command line,
// and never printed back; results are ids, versions and KCVs.

// keyCmd is "pingate key": the key custody commands.
type keyCmd struct {
	KCV         keyKCVCmd         `cmd:"" name:"kcv" help:"print the check value of a clear key read from - or @FILE"`
	LMKGenerate keyLMKGenerateCmd `cmd:"" name:"lmk-generate" help:"write a new random LMK to a file (mode 0600)"`
	Init        keyInitCmd        `cmd:"" help:"create a key store and its custody log"`
	Import      keyImportCmd      `cmd:"" help:"import a key enciphered under a ZMK held in the store"`
	ImportTR31  keyImportTR31Cmd  `cmd:"" name:"import-tr31" help:"import a TR-31 key block made under a ZMK (KBPK) held in the store"`
	Combine     keyCombineCmd     `cmd:"" help:"combine 2 or 3 clear components into a key (a ZMK by default)"`
	Generate    keyGenerateCmd    `cmd:"" help:"generate a random key in the store"`
	Rotate      keyRotateCmd      `cmd:"" help:"add a new version of a key (random, imported, from a key block or from components)"`
	Remove      keyRemoveCmd      `cmd:"" help:"remove a key from the store"`
	ExportTR31  keyExportCmd      `cmd:"" name:"export-tr31" help:"print a key as a TR-31 key block under a ZMK"`
	List        keyListCmd        `cmd:"" help:"list the keys: id usage version KCV"`
	Log         keyLogCmd         `cmd:"" help:"the custody log: verify, migrate"`
}

type keyLogCmd struct {
	Verify  keyLogVerifyCmd  `cmd:"" help:"verify the custody log's chain of MACs (and, with the store, its tail)"`
	Migrate keyLogMigrateCmd `cmd:"" help:"key a custody log written by an older pingate (records without a MAC)"`
}

// storeFlags are the flags that open the key store.
type storeFlags struct {
	Store   string        `name:"store" help:"key store file" placeholder:"FILE"`
	LMKFile string        `name:"lmk-file" help:"file holding the LMK" placeholder:"FILE"`
	LMKEnv  string        `name:"lmk-env" help:"environment variable holding the LMK" placeholder:"VAR"`
	Log     string        `name:"log" help:"custody log file" placeholder:"FILE"`
	Grace   time.Duration `name:"grace" default:"${grace}" help:"how long a rotated-out version stays usable"`
}

// custodyFlags are the custody log's who and why of a change.
type custodyFlags struct {
	Who string `name:"who" help:"who does this (recorded in the custody log; required)"`
	Why string `name:"why" help:"why (recorded in the custody log; required)"`
}

func (sf *storeFlags) check() error {
	switch {
	case sf.Store == "" || sf.Log == "":
		return fmt.Errorf("%w: --store and --log are required", errUsage)
	case (sf.LMKFile == "") == (sf.LMKEnv == ""):
		return fmt.Errorf("%w: give exactly one of --lmk-file and --lmk-env", errUsage)
	}
	return nil
}

func (sf *storeFlags) config() keystore.StoreConfig {
	return keystore.StoreConfig{
		Path: sf.Store, LogPath: sf.Log, Grace: sf.Grace,
		LMK: keystore.LMKRef{File: sf.LMKFile, Env: sf.LMKEnv},
	}
}

// open opens an existing store (keystore.ErrNoStore when there is none:
// see key init).
func (sf *storeFlags) open() (*keystore.Store, error) {
	if err := sf.check(); err != nil {
		return nil, err
	}
	return keystore.OpenStore(sf.config())
}

func (cf *custodyFlags) custodian() (keystore.Custodian, error) {
	if strings.TrimSpace(cf.Who) == "" || strings.TrimSpace(cf.Why) == "" {
		return keystore.Custodian{}, fmt.Errorf("%w: --who and --why are required: they go into the custody log", errUsage)
	}
	return keystore.Custodian{Who: cf.Who, Why: cf.Why}, nil
}

const storeExample = "--store keys.json --log custody.log --lmk-file lmk.key"

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

type keyKCVCmd struct {
	Key cli.SecretRef `name:"key" placeholder:"-|@FILE" help:"clear key (hex): - for a line of standard input, or @FILE (never the value itself)"`
	Alg string        `name:"alg" default:"tdes" help:"tdes, aes or sm4"`
}

func (*keyKCVCmd) Help() string {
	return cli.Example("pingate key kcv --key @zmk-component-1.hex --alg tdes")
}

func (c *keyKCVCmd) Run(env *cli.Env) error {
	a, err := parseAlg(c.Alg)
	if err != nil {
		return err
	}
	if c.Key.Value() == "" {
		return fmt.Errorf("%w: --key is required", errUsage)
	}
	k, err := pinblock.ParseHexKey("kcv", pinblock.UsageZMK, a, 1, c.Key.Value())
	if err != nil {
		return err
	}
	defer k.Zeroize()
	return env.Result(k.KCV(), nil)
}

type keyLMKGenerateCmd struct {
	Out string `name:"out" placeholder:"FILE" help:"file to create (mode 0600; never overwritten; required)"`
	Alg string `name:"alg" default:"aes" help:"aes (AES-256) or tdes (triple-length)"`
}

func (*keyLMKGenerateCmd) Help() string {
	return cli.Example("pingate key lmk-generate --out /etc/pingate/lmk.key")
}

func (c *keyLMKGenerateCmd) Run(env *cli.Env) error {
	if c.Out == "" {
		return fmt.Errorf("%w: --out is required", errUsage)
	}
	a, err := parseAlg(c.Alg)
	if err != nil {
		return err
	}
	out, err := keystore.WriteLMKFile(c.Out, a)
	return env.Result(out, err)
}

// keyInitCmd: creating a store is explicit: every other command refuses a
// store file that does not exist, and init refuses a custody log that has
// records.
type keyInitCmd struct {
	storeFlags `embed:""`
}

func (*keyInitCmd) Help() string { return cli.Example("pingate key init " + storeExample) }

func (c *keyInitCmd) Run(env *cli.Env) error {
	if err := c.check(); err != nil {
		return err
	}
	s, err := keystore.InitStore(c.config())
	if err != nil {
		return err
	}
	defer s.Close()
	return env.Result(fmt.Sprintf("created key store %s (LMK %s), custody log %s", c.Store, s.LMKKCV(), c.Log), nil)
}

type keyImportCmd struct {
	storeFlags   `embed:""`
	custodyFlags `embed:""`
	ID           string        `name:"id" help:"key id (required)"`
	Usage        string        `name:"usage" help:"ZPK, TPK, TAK, PVK or ZMK"`
	Alg          string        `name:"alg" default:"tdes" help:"tdes, aes or sm4"`
	Under        string        `name:"under" placeholder:"ZMK" help:"id of the ZMK the key is enciphered under (required)"`
	Key          cli.SecretRef `name:"key" placeholder:"-|@FILE" help:"the key enciphered under the ZMK (hex): - or @FILE (required)"`
	KCV          string        `name:"kcv" help:"the key's check value (required)"`
}

func (*keyImportCmd) Help() string {
	return cli.Example("pingate key import --id zpk-acq1 --usage ZPK --under zmk-acq1 --key @zpk-under-zmk.hex --kcv 08D7B4 " +
		storeExample + " --who alice --why 'new ZPK from acquirer 1'")
}

func (c *keyImportCmd) Run(env *cli.Env) error {
	cu, err := c.custodian()
	if err != nil {
		return err
	}
	u, err := parseUsage(c.Usage)
	if err != nil {
		return err
	}
	a, err := parseAlg(c.Alg)
	if err != nil {
		return err
	}
	if c.ID == "" || c.Under == "" || c.Key.Value() == "" || c.KCV == "" {
		return fmt.Errorf("%w: --id, --under, --key and --kcv are required", errUsage)
	}
	enc, err := hex.DecodeString(strings.TrimSpace(c.Key.Value()))
	if err != nil {
		return fmt.Errorf("%w: --key is not hexadecimal", errUsage)
	}
	s, err := c.open()
	if err != nil {
		return err
	}
	defer s.Close()
	info, err := s.ImportUnderZMK(pinblock.ImportRequest{ID: c.ID, Usage: u, Algorithm: a, Enciphered: enc, ZMK: pinblock.KeyRef{ID: c.Under}, KCV: c.KCV, Who: cu.Who, Why: cu.Why})
	return env.Result(infoLine(info), err)
}

type keyImportTR31Cmd struct {
	storeFlags   `embed:""`
	custodyFlags `embed:""`
	ID           string     `name:"id" help:"key id (required)"`
	Usage        string     `name:"usage" help:"override the usage the block maps to (TPK for a P0 block)"`
	Under        string     `name:"under" placeholder:"ZMK" help:"id of the ZMK (KBPK) the block is made under (required)"`
	Block        cli.Secret `name:"block" placeholder:"TEXT|@FILE|-" help:"the TR-31 key block; or @FILE, or - for a line of standard input (required)"`
}

func (*keyImportTR31Cmd) Help() string {
	return cli.Example("pingate key import-tr31 --id zpk-acq1 --under zmk-acq1 --block @zpk.tr31 " + storeExample + " --who alice --why 'ZPK from acquirer 1'")
}

func (c *keyImportTR31Cmd) Run(env *cli.Env) error {
	cu, err := c.custodian()
	if err != nil {
		return err
	}
	var u pinblock.Usage
	if c.Usage != "" {
		if u, err = parseUsage(c.Usage); err != nil {
			return err
		}
	}
	if c.ID == "" || c.Under == "" || c.Block.Value() == "" {
		return fmt.Errorf("%w: --id, --under and --block are required", errUsage)
	}
	s, err := c.open()
	if err != nil {
		return err
	}
	defer s.Close()
	info, err := s.ImportTR31(keystore.TR31ImportRequest{ID: c.ID, Usage: u, Block: strings.TrimSpace(c.Block.Value()), KBPK: c.Under, Custodian: cu})
	return env.Result(infoLine(info), err)
}

// componentFlags are the --component/--kcv pairs of a key made from clear
// components.
type componentFlags struct {
	Component cli.SecretRefList `name:"component" placeholder:"-|@FILE" help:"clear component (hex): - for a line of standard input, or @FILE (never the value itself); repeat 2 or 3 times"`
	KCV       []string          `name:"kcv" sep:"none" help:"check value of each component, in the same order (with --key in rotate: the key's)"`
}

// components parses the pairs; nil when no --component was given.
func (cf *componentFlags) components() ([]pinblock.Component, error) {
	comps, kcvs := cf.Component.Values(), cf.KCV
	if len(comps) == 0 {
		return nil, nil
	}
	if len(comps) != len(kcvs) {
		return nil, fmt.Errorf("%w: give one --kcv per --component (%d components, %d KCVs)", errUsage, len(comps), len(kcvs))
	}
	if len(comps) < pinblock.MinComponents || len(comps) > pinblock.MaxComponents {
		return nil, fmt.Errorf("%w: give %d to %d components, not %d", errUsage, pinblock.MinComponents, pinblock.MaxComponents, len(comps))
	}
	out := make([]pinblock.Component, 0, len(comps))
	for i := range comps {
		c, err := pinblock.ParseComponent(comps[i], kcvs[i])
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

type keyCombineCmd struct {
	storeFlags     `embed:""`
	custodyFlags   `embed:""`
	componentFlags `embed:""`
	ID             string `name:"id" help:"key id (required)"`
	Alg            string `name:"alg" default:"tdes" help:"tdes, aes or sm4"`
	Usage          string `name:"usage" default:"ZMK" help:"usage of the combined key"`
}

func (*keyCombineCmd) Help() string {
	return cli.Example("pingate key combine --id zmk-acq1 --component - --kcv 4A1C2E --component - --kcv 77F0D1 " +
		storeExample + " --who 'alice,bob' --why 'ZMK ceremony'")
}

func (c *keyCombineCmd) Run(env *cli.Env) error {
	cu, err := c.custodian()
	if err != nil {
		return err
	}
	u, err := parseUsage(c.Usage)
	if err != nil {
		return err
	}
	a, err := parseAlg(c.Alg)
	if err != nil {
		return err
	}
	if c.ID == "" {
		return fmt.Errorf("%w: --id is required", errUsage)
	}
	cs, err := c.components()
	if err != nil {
		return err
	}
	if cs == nil {
		return fmt.Errorf("%w: give 2 or 3 --component/--kcv pairs", errUsage)
	}
	s, err := c.open()
	if err != nil {
		for _, x := range cs {
			x.Zeroize()
		}
		return err
	}
	defer s.Close()
	info, err := s.CombineComponents(keystore.CombineRequest{ID: c.ID, Usage: u, Algorithm: a, Components: cs, Custodian: cu})
	return env.Result(infoLine(info), err)
}

type keyGenerateCmd struct {
	storeFlags   `embed:""`
	custodyFlags `embed:""`
	ID           string `name:"id" help:"key id (required)"`
	Usage        string `name:"usage" help:"ZPK, TPK, TAK, PVK or ZMK"`
	Alg          string `name:"alg" default:"aes" help:"tdes, aes or sm4"`
	Length       int    `name:"length" placeholder:"BYTES" help:"key length in bytes (TDES 16 or 24; AES 16, 24 or 32; SM4 16); default 16 for TDES and SM4, 32 for AES"`
}

func (*keyGenerateCmd) Help() string {
	return cli.Example("pingate key generate --id pvk-1 --usage PVK --alg tdes " + storeExample + " --who alice --why 'new PVK'")
}

func (c *keyGenerateCmd) Run(env *cli.Env) error {
	cu, err := c.custodian()
	if err != nil {
		return err
	}
	u, err := parseUsage(c.Usage)
	if err != nil {
		return err
	}
	a, err := parseAlg(c.Alg)
	if err != nil {
		return err
	}
	if c.ID == "" {
		return fmt.Errorf("%w: --id is required", errUsage)
	}
	n := c.Length
	if n == 0 {
		n = map[pinblock.Algorithm]int{pinblock.TDES: 16, pinblock.AES: 32, pinblock.SM4: 16}[a]
	}
	s, err := c.open()
	if err != nil {
		return err
	}
	defer s.Close()
	info, err := s.Generate(keystore.GenerateRequest{ID: c.ID, Usage: u, Algorithm: a, Length: n, Custodian: cu})
	return env.Result(infoLine(info), err)
}

// keyRotateCmd: with no source, a random new version is generated.
type keyRotateCmd struct {
	storeFlags     `embed:""`
	custodyFlags   `embed:""`
	componentFlags `embed:""`
	ID             string        `name:"id" help:"key id (required)"`
	Under          string        `name:"under" placeholder:"ZMK" help:"ZMK the new version is enciphered under (with --key and --kcv, or --block)"`
	Key            cli.SecretRef `name:"key" placeholder:"-|@FILE" help:"new version enciphered under --under (hex): - or @FILE"`
	Block          cli.Secret    `name:"block" placeholder:"TEXT|@FILE|-" help:"new version as a TR-31 key block under --under; or @FILE, or -"`
}

func (*keyRotateCmd) Help() string {
	return cli.Example(
		"pingate key rotate --id zpk-acq1 "+storeExample+" --who alice --why 'yearly rotation'",
		"pingate key rotate --id zpk-acq1 --under zmk-acq1 --block @zpk-v2.tr31 "+storeExample+" --who alice --why 'new ZPK from acquirer 1'")
}

func (c *keyRotateCmd) Run(env *cli.Env) error {
	cu, err := c.custodian()
	if err != nil {
		return err
	}
	if c.ID == "" {
		return fmt.Errorf("%w: --id is required", errUsage)
	}
	req := keystore.RotateRequest{ID: c.ID, Fresh: true, Custodian: cu}
	// --kcv is shared: with --key it is the key's KCV, with --component
	// one per component.
	kcvs, keyHex, block := c.KCV, c.Key.Value(), c.Block.Value()
	switch {
	case keyHex != "" && block != "":
		return fmt.Errorf("%w: give --key or --block, not both", errUsage)
	case (keyHex != "" || block != "") && len(c.Component.Values()) > 0:
		return fmt.Errorf("%w: give --key, --block or --component, not more than one", errUsage)
	case keyHex != "":
		if c.Under == "" || len(kcvs) != 1 {
			return fmt.Errorf("%w: --key needs --under and one --kcv", errUsage)
		}
		enc, err := hex.DecodeString(strings.TrimSpace(keyHex))
		if err != nil {
			return fmt.Errorf("%w: --key is not hexadecimal", errUsage)
		}
		req.Enciphered, req.ZMK, req.KCV = enc, c.Under, kcvs[0]
	case block != "":
		if c.Under == "" {
			return fmt.Errorf("%w: --block needs --under", errUsage)
		}
		req.Block, req.KBPK = strings.TrimSpace(block), c.Under
	default:
		if req.Components, err = c.components(); err != nil {
			return err
		}
		if req.Components == nil && len(kcvs) > 0 {
			return fmt.Errorf("%w: --kcv without --key or --component", errUsage)
		}
	}
	s, err := c.open()
	if err != nil {
		for _, x := range req.Components {
			x.Zeroize()
		}
		return err
	}
	defer s.Close()
	info, err := s.Rotate(req)
	return env.Result(infoLine(info), err)
}

type keyRemoveCmd struct {
	storeFlags   `embed:""`
	custodyFlags `embed:""`
	ID           string `name:"id" help:"key id (required)"`
}

func (*keyRemoveCmd) Help() string {
	return cli.Example("pingate key remove --id zpk-old " + storeExample + " --who alice --why 'acquirer 2 gone'")
}

func (c *keyRemoveCmd) Run(env *cli.Env) error {
	cu, err := c.custodian()
	if err != nil {
		return err
	}
	if c.ID == "" {
		return fmt.Errorf("%w: --id is required", errUsage)
	}
	s, err := c.open()
	if err != nil {
		return err
	}
	defer s.Close()
	if err := s.Remove(c.ID, cu); err != nil {
		return err
	}
	return env.Result("removed "+c.ID, nil)
}

type keyExportCmd struct {
	storeFlags   `embed:""`
	custodyFlags `embed:""`
	ID           string `name:"id" help:"key id (required)"`
	Under        string `name:"under" placeholder:"ZMK" help:"ZMK to export under (required)"`
}

func (*keyExportCmd) Help() string {
	return cli.Example("pingate key export-tr31 --id zpk-acq1 --under zmk-acq1 " + storeExample + " --who alice --why 'ZPK for acquirer 1'")
}

func (c *keyExportCmd) Run(env *cli.Env) error {
	cu, err := c.custodian()
	if err != nil {
		return err
	}
	if c.ID == "" || c.Under == "" {
		return fmt.Errorf("%w: --id and --under are required", errUsage)
	}
	s, err := c.open()
	if err != nil {
		return err
	}
	defer s.Close()
	block, err := s.ExportTR31(c.ID, c.Under, cu)
	return env.Result(block, err)
}

type keyListCmd struct {
	storeFlags `embed:""`
	JSON       bool `name:"json" help:"print a JSON array"`
}

func (*keyListCmd) Help() string { return cli.Example("pingate key list " + storeExample) }

func (c *keyListCmd) Run(env *cli.Env) error {
	s, err := c.open()
	if err != nil {
		return err
	}
	defer s.Close()
	keys, err := s.List()
	if err != nil {
		return err
	}
	if c.JSON {
		b, err := json.Marshal(keys)
		if err != nil {
			return err
		}
		return env.Result(string(b), nil)
	}
	lines := make([]string, 0, len(keys))
	for _, k := range keys {
		lines = append(lines, fmt.Sprintf("%s mode %c", infoLine(k.KeyInfo), byte(cmp.Or(k.ModeOfUse, '?'))))
	}
	if len(lines) == 0 {
		return env.Result("no keys", nil)
	}
	return env.Result(strings.Join(lines, "\n"), nil)
}

type keyLogMigrateCmd struct {
	storeFlags   `embed:""`
	custodyFlags `embed:""`
}

func (*keyLogMigrateCmd) Help() string {
	return cli.Example("pingate key log migrate " + storeExample + " --who alice --why 'upgrade to a keyed custody log'")
}

func (c *keyLogMigrateCmd) Run(env *cli.Env) error {
	cu, err := c.custodian()
	if err != nil {
		return err
	}
	if err := c.check(); err != nil {
		return err
	}
	st, err := keystore.MigrateCustodyLog(c.config(), cu)
	if err != nil {
		return err
	}
	return env.Result(fmt.Sprintf("custody log keyed: ok %d records", st.Records), nil)
}

// keyLogVerifyCmd: with the store, records removed from the end of the log
// are caught too.
type keyLogVerifyCmd struct {
	storeFlags `embed:""`
}

func (*keyLogVerifyCmd) Help() string {
	return cli.Example("pingate key log verify --log custody.log", "pingate key log verify "+storeExample)
}

func (c *keyLogVerifyCmd) Run(env *cli.Env) error {
	if c.Log == "" {
		return fmt.Errorf("%w: --log is required", errUsage)
	}
	if c.Store != "" {
		s, err := c.open() // verifies the log against the store's head and tail
		if err != nil {
			return err
		}
		defer s.Close()
		st, err := s.CheckLog()
		if err != nil {
			return err
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
		return env.Result(out, nil)
	}
	head, err := keystore.VerifyCustodyLog(c.Log)
	if err != nil {
		var ce *keystore.CustodyError
		if errors.As(err, &ce) {
			return fmt.Errorf("custody log %s: first bad record at seq %d: %s", c.Log, ce.Seq, ce.Reason)
		}
		return err
	}
	return env.Result(fmt.Sprintf("ok %d records", head.Seq), nil)
}
