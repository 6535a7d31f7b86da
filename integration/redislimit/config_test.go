package redislimit

import (
	"strings"
	"testing"
	"time"
)

func TestConfigDefaults(t *testing.T) {
	got := Config{Addrs: []string{"127.0.0.1:6379"}}.WithDefaults()
	want := Config{
		Mode: ModeStandalone, Addrs: []string{"127.0.0.1:6379"},
		DialTimeout: 250 * time.Millisecond, ReadTimeout: 100 * time.Millisecond,
		KeyPrefix: "pg", DayZone: "UTC",
		CardOpsPerDay: 10, CardWrongPINPerHour: 3,
		TerminalRPS: 1, TerminalBurst: 5, AcquirerRPS: 200, AcquirerBurst: 400,
	}
	if got.Mode != want.Mode || got.DialTimeout != want.DialTimeout || got.ReadTimeout != want.ReadTimeout ||
		got.KeyPrefix != want.KeyPrefix || got.DayZone != want.DayZone ||
		got.CardOpsPerDay != want.CardOpsPerDay || got.CardWrongPINPerHour != want.CardWrongPINPerHour ||
		got.TerminalRPS != want.TerminalRPS || got.TerminalBurst != want.TerminalBurst ||
		got.AcquirerRPS != want.AcquirerRPS || got.AcquirerBurst != want.AcquirerBurst {
		t.Errorf("WithDefaults() = %+v, want %+v", got, want)
	}
	if err := (Config{Addrs: []string{"127.0.0.1:6379"}}).Validate(); err != nil {
		t.Errorf("Validate(defaults) = %v, want nil", err)
	}
}

func TestConfigValidateOK(t *testing.T) {
	tests := []struct {
		name string
		give Config
	}{
		{"standalone", Config{Addrs: []string{"redis:6379"}, DB: 2, PasswordEnv: "REDIS_PASSWORD"}},
		{"sentinel", Config{Mode: ModeSentinel, Addrs: []string{"s1:26379", "s2:26379"}, MasterName: "pg"}},
		{"cluster", Config{Mode: ModeCluster, Addrs: []string{"n1:6379", "n2:6379", "n3:6379"}}},
		{"zone", Config{Addrs: []string{"[::1]:6379"}, DayZone: "Europe/Paris", TerminalRPS: 0.5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.give.Validate(); err != nil {
				t.Errorf("Validate(%+v) = %v, want nil", tt.give, err)
			}
		})
	}
}

func TestConfigValidateErrors(t *testing.T) {
	ok := []string{"127.0.0.1:6379"}
	tests := []struct {
		name string
		give Config
		want string // substring naming the bad value
	}{
		{"mode", Config{Mode: "replicas", Addrs: ok}, `mode "replicas"`},
		{"no addrs", Config{}, "addrs: at least one"},
		{"bad addr", Config{Addrs: []string{"localhost"}}, `"localhost" is not host:port`},
		{"two standalone", Config{Addrs: []string{"a:1", "b:2"}}, "2 addresses in standalone"},
		{"sentinel master", Config{Mode: ModeSentinel, Addrs: ok}, "master_name"},
		{"cluster db", Config{Mode: ModeCluster, Addrs: ok, DB: 3}, "db 3"},
		{"negative db", Config{Addrs: ok, DB: -1}, "db -1"},
		{"password env", Config{Addrs: ok, PasswordEnv: "1BAD-NAME"}, `password_env "1BAD-NAME"`},
		{"dial timeout", Config{Addrs: ok, DialTimeout: -time.Second}, "dial_timeout -1s"},
		{"read timeout", Config{Addrs: ok, ReadTimeout: -time.Second}, "read_timeout -1s"},
		{"prefix", Config{Addrs: ok, KeyPrefix: "p{g}"}, `key_prefix "p{g}"`},
		{"zone", Config{Addrs: ok, DayZone: "Mars/Olympus"}, `day_zone "Mars/Olympus"`},
		{"card ops", Config{Addrs: ok, CardOpsPerDay: -1}, "card_ops_per_day -1"},
		{"wrong pin", Config{Addrs: ok, CardWrongPINPerHour: -2}, "card_wrong_pin_per_hour -2"},
		{"terminal rps", Config{Addrs: ok, TerminalRPS: -1}, "terminal_rps -1"},
		{"terminal burst", Config{Addrs: ok, TerminalBurst: -1}, "terminal_burst -1"},
		{"acquirer rps", Config{Addrs: ok, AcquirerRPS: 2e6}, "acquirer_rps 2e+06"},
		{"acquirer burst", Config{Addrs: ok, AcquirerBurst: -5}, "acquirer_burst -5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.give.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate(%+v) = %v, want an error containing %q", tt.give, err, tt.want)
			}
		})
	}
}

func TestConfigValidateNamesEveryError(t *testing.T) {
	err := Config{Mode: "x", CardOpsPerDay: -1, AcquirerBurst: -1}.Validate()
	for _, want := range []string{`mode "x"`, "addrs", "card_ops_per_day -1", "acquirer_burst -1"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v, want it to name %q", err, want)
		}
	}
}

func TestNewPasswordEnvUnset(t *testing.T) {
	t.Setenv("PINGATE_TEST_REDIS_PW", "")
	if _, err := New(Config{Addrs: []string{"127.0.0.1:1"}, PasswordEnv: "PINGATE_TEST_REDIS_PW_UNSET"}); err == nil ||
		!strings.Contains(err.Error(), "PINGATE_TEST_REDIS_PW_UNSET is not set") {
		t.Errorf("New(unset password env) = %v, want an error naming the variable", err)
	}
	l, err := New(Config{Addrs: []string{"127.0.0.1:1"}, PasswordEnv: "PINGATE_TEST_REDIS_PW"})
	if err != nil {
		t.Fatalf("New(set password env) = %v, want nil", err)
	}
	l.Close()
}
