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
