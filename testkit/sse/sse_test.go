package sse

import (
	"reflect"
	"strings"
	"testing"
)

func TestReadParsesEventsCommentsAndMultilineData(t *testing.T) {
	in := "retry: 1000\n\n: heartbeat\n\nid: 1-0\r\nevent: price\r\ndata: {\"a\":1}\r\n\r\nid:2-0\ndata: one\ndata: two\n\nid: 3-0\ndata: cut"
	var got []Event
	if err := Read(strings.NewReader(in), func(e Event) bool { got = append(got, e); return true }); err != nil {
		t.Fatal(err)
	}
	want := []Event{{Retry: "1000"}, {Comment: "heartbeat"}, {ID: "1-0", Event: "price", Data: `{"a":1}`}, {ID: "2-0", Data: "one\ntwo"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v (an event never ended by a blank line is not dispatched)", got, want)
	}
}
