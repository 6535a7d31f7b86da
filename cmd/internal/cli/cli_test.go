package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

type testCmd struct {
	Key    SecretRef `name:"key" placeholder:"-|@FILE" help:"a key"`
	Length int       `name:"length" help:"a length"`
	JSON   bool      `name:"json" help:"JSON"`
}

func (*testCmd) Help() string     { return Example("t do --key @k") }
func (c *testCmd) Run(*Env) error { return nil }

var testApp = App{Name: "t", Grammar: func() any {
	return &struct {
		Do testCmd `cmd:"" help:"do it"`
	}{}
}}

// TestRunProblems: every kind of parse error is one line, exit 2, naming the
// flag or word at fault and never the value given.
func TestRunProblems(t *testing.T) {
	const secret = "0123456789ABCDEF"
	tests := []struct {
		give []string
		want string
	}{
		{give: []string{"do", "--key", secret}, want: "--key takes - (a line of standard input) or @FILE"},
		{give: []string{"do", "--length", secret}, want: "invalid value for --length"},
		{give: []string{"do", "--length=" + secret}, want: "invalid value for --length"},
		{give: []string{"do", "--json=" + secret}, want: "invalid value for --json"},
		{give: []string{"do", "--lenght", "3"}, want: `unknown flag --lenght, did you mean "--length"?`},
		{give: []string{"do", "--kye=" + secret}, want: "unknown flag --kye"},
		{give: []string{"do", secret}, want: "unexpected argument (value not shown)"},
		{give: []string{"od"}, want: `unexpected argument od, did you mean "do"?`},
		{give: []string{"do", "--length"}, want: "flag --length needs a value"},
		{give: []string{"do", "--length", "-3"}, want: "--length=VALUE"},
		{give: []string{secret}, want: "unexpected argument (value not shown)"},
	}
	for _, tt := range tests {
		var out, errOut bytes.Buffer
		code := Run(context.Background(), testApp, tt.give, &out, &errOut)
		if code != 2 || out.Len() != 0 || strings.Count(errOut.String(), "\n") != 1 {
			t.Errorf("Run(%q) = %d, stdout %q, stderr %q; want 2 and one stderr line", tt.give, code, out.String(), errOut.String())
		}
		if !strings.Contains(errOut.String(), tt.want) {
			t.Errorf("Run(%q): stderr %q, want it to contain %q", tt.give, errOut.String(), tt.want)
		}
		if strings.Contains(errOut.String(), secret) {
			t.Errorf("Run(%q): stderr repeats the value given", tt.give)
		}
	}
}

// TestRunHelp: --help, -h and help CMD print the command's flags and example
// on stdout with exit 0; the binary alone prints the help with exit 2.
func TestRunHelp(t *testing.T) {
	for _, give := range [][]string{{"do", "--help"}, {"do", "-h"}, {"help", "do"}} {
		var out, errOut bytes.Buffer
		if code := Run(context.Background(), testApp, give, &out, &errOut); code != 0 || errOut.Len() != 0 {
			t.Errorf("Run(%q) = %d, stderr %q; want 0 and nothing", give, code, errOut.String())
		}
		for _, want := range []string{"Usage: t do", "--key=-|@FILE", "--length=INT", "--json", "Example:", "    t do --key @k"} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("Run(%q): help lacks %q:\n%s", give, want, out.String())
			}
		}
	}
	var out, errOut bytes.Buffer
	if code := Run(context.Background(), testApp, nil, &out, &errOut); code != 2 || !strings.Contains(out.String(), "Usage: t") {
		t.Errorf("Run() = %d, %q; want 2 and the help", code, out.String())
	}
}

// TestCommands lists the leaves with their flags.
func TestCommands(t *testing.T) {
	cmds := Commands(testApp)
	if len(cmds) != 1 || strings.Join(cmds[0].Path, " ") != "do" || strings.Join(cmds[0].Flags, " ") != "--key --length --json" {
		t.Errorf("Commands = %+v, want do with --key --length --json", cmds)
	}
	if !HasCommand(testApp, "do") || HasCommand(testApp, "od") {
		t.Error("HasCommand: want do, not od")
	}
}
