package iso8583

import "testing"

func TestResponseMTI(t *testing.T) {
	tests := []struct{ give, want string }{
		{MTIAuthRequest, MTIAuthResponse},
		{MTIReversalAdvice, MTIReversalResponse},
		{MTINetworkRequest, MTINetworkResponse},
		{MTIAuthResponse, MTIAuthResponse},
		{"01", "01"},
	}
	for _, tt := range tests {
		if got := ResponseMTI(tt.give); got != tt.want {
			t.Errorf("ResponseMTI(%q) = %q, want %q", tt.give, got, tt.want)
		}
	}
}
