package cgsim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// maxControlBody bounds control-route bodies; they are a few fields at most.
const maxControlBody = 1 << 16

// CallsReport is the body of GET /_sim/calls.
type CallsReport struct {
	// Calls is Server.Calls.
	Calls int `json:"calls"`
	// Log is Server.CallLog; never null.
	Log []Call `json:"log"`
}

// PriceRequest is the body of PUT /_sim/price. Price is JSON number text;
// it may be sent as a string or as a bare number, and a bare number is kept
// digit for digit.
type PriceRequest struct {
	// ID is the coin id, e.g. "bitcoin".
	ID string `json:"id"`
	// Currency is the vs currency, e.g. "usd".
	Currency string `json:"currency"`
	// Price is the pinned value, e.g. "67187.3358936566" or "2.08e-06".
	Price json.RawMessage `json:"price"`
}

// CoinRequest is the body of POST /_sim/coin.
type CoinRequest struct {
	// ID is the coin id, e.g. "my-coin".
	ID string `json:"id"`
	// Symbol is the ticker, e.g. "myc".
	Symbol string `json:"symbol"`
	// Name is the display name.
	Name string `json:"name"`
}

// okBody is what mutating control routes answer, so clients can always
// decode a JSON body.
const okBody = `{"ok":true}`

// serveControl serves the /_sim routes used when the simulator runs as a
// separate process. They are not counted as calls and get no latency.
func (s *Server) serveControl(w http.ResponseWriter, r *http.Request) {
	route := strings.TrimSuffix(r.URL.Path, "/")
	switch route + " " + r.Method {
	case "/_sim/calls GET", "/_sim/calls HEAD":
		rep := CallsReport{Calls: s.Calls(), Log: s.CallLog()}
		writeJSON(w, http.StatusOK, mustMarshal(rep))
	case "/_sim/reset POST":
		s.Reset()
		writeJSON(w, http.StatusOK, []byte(okBody))
	case "/_sim/fault GET":
		writeJSON(w, http.StatusOK, mustMarshal(s.currentFault()))
	case "/_sim/fault POST", "/_sim/fault PUT":
		var f Fault
		if err := decodeBody(r, &f); err != nil {
			writeJSON(w, http.StatusBadRequest, errorBody(err.Error()))
			return
		}
		s.SetFault(f)
		writeJSON(w, http.StatusOK, []byte(okBody))
	case "/_sim/fault DELETE":
		s.ClearFault()
		writeJSON(w, http.StatusOK, []byte(okBody))
	case "/_sim/price PUT", "/_sim/price POST":
		var p PriceRequest
		if err := decodeBody(r, &p); err != nil {
			writeJSON(w, http.StatusBadRequest, errorBody(err.Error()))
			return
		}
		price, err := priceText(p.Price)
		if err == nil {
			err = s.setPrice(p.ID, p.Currency, price)
		}
		if err != nil {
			writeJSON(w, http.StatusBadRequest, errorBody(err.Error()))
			return
		}
		writeJSON(w, http.StatusOK, []byte(okBody))
	case "/_sim/coin POST", "/_sim/coin PUT":
		var c CoinRequest
		if err := decodeBody(r, &c); err != nil {
			writeJSON(w, http.StatusBadRequest, errorBody(err.Error()))
			return
		}
		if strings.TrimSpace(c.ID) == "" {
			writeJSON(w, http.StatusBadRequest, errorBody("id is required"))
			return
		}
		s.AddCoin(c.ID, c.Symbol, c.Name)
		writeJSON(w, http.StatusOK, []byte(okBody))
	default:
		switch route {
		case "/_sim/calls", "/_sim/reset", "/_sim/fault", "/_sim/price", "/_sim/coin":
			writeJSON(w, http.StatusMethodNotAllowed, errorBody("method "+r.Method+" not allowed on "+route))
		default:
			writeJSON(w, http.StatusNotFound, errorBody("unknown control route "+r.URL.Path))
		}
	}
}

// decodeBody reads a small JSON body strictly, so typos in field names are
// reported instead of silently ignored.
func decodeBody(r *http.Request, v any) error {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxControlBody))
	if err != nil {
		return fmt.Errorf("read body: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("bad JSON body: %w", err)
	}
	return nil
}

// priceText turns the raw price field into number text, accepting either a
// JSON string or a bare JSON number.
func priceText(raw json.RawMessage) (string, error) {
	t := strings.TrimSpace(string(raw))
	if t == "" || t == "null" {
		return "", fmt.Errorf("price is required")
	}
	if t[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", fmt.Errorf("bad price: %w", err)
		}
		return s, nil
	}
	return t, nil
}
