package httperr

import "testing"

func TestDecodeBodyIsStrict(t *testing.T) {
	if b, err := DecodeBody([]byte(`{"statusCode":401,"message":"Invalid credentials","error":"Unauthorized"}`)); err != nil || b.StatusCode != 401 || b.Message != "Invalid credentials" {
		t.Errorf("valid body: %+v %v", b, err)
	}
	for _, raw := range []string{`<html>502</html>`, `{"statusCode":500,"message":"x"}`, `{"message":"x","error":"y"}`, `[]`, ``} {
		if _, err := DecodeBody([]byte(raw)); err == nil {
			t.Errorf("%q accepted", raw)
		}
	}
}

// The error field names a status as NestJS does, which differs from Go for 413.
func TestStatusTextIsNestJS(t *testing.T) {
	for status, want := range map[int]string{413: "Payload Too Large", 400: "Bad Request", 431: "Request Header Fields Too Large", 503: "Service Unavailable"} {
		if got := StatusText(status); got != want {
			t.Errorf("StatusText(%d) = %q, want %q", status, got, want)
		}
		if got := BodyOf(New(status, "x")).Error; got != want {
			t.Errorf("BodyOf(%d).Error = %q, want %q", status, got, want)
		}
	}
}
