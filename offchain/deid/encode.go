package deid

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// object is a JSON object that keeps its members in insertion order, so that
// the output follows FHIR's element order (resourceType and id first, then
// the elements in the order the specification lists them) instead of Go's
// map order or an alphabetical one.
//
// The values of an object (and of the []any arrays in it) are only ever
// *object, []any, string, json.Number or bool.
type object struct {
	keys []string
	vals []any
}

func (o *object) set(k string, v any) {
	for i, kk := range o.keys {
		if kk == k {
			o.vals[i] = v
			return
		}
	}
	o.keys = append(o.keys, k)
	o.vals = append(o.vals, v)
}

func (o *object) get(k string) (any, bool) {
	for i, kk := range o.keys {
		if kk == k {
			return o.vals[i], true
		}
	}
	return nil, false
}

func (o *object) has(k string) bool {
	_, ok := o.get(k)
	return ok
}

func (o *object) del(k string) {
	for i, kk := range o.keys {
		if kk == k {
			o.keys = append(o.keys[:i], o.keys[i+1:]...)
			o.vals = append(o.vals[:i], o.vals[i+1:]...)
			return
		}
	}
}

// replace puts newKey: v where old is (or appends it when old is absent).
func (o *object) replace(old, newKey string, v any) {
	for i, kk := range o.keys {
		if kk == old {
			o.keys[i], o.vals[i] = newKey, v
			return
		}
	}
	o.set(newKey, v)
}

// insertAfter puts k: v right after the member after (or first when after is
// absent).
func (o *object) insertAfter(after, k string, v any) {
	i := 0
	for j, kk := range o.keys {
		if kk == after {
			i = j + 1
		}
	}
	o.keys = append(o.keys[:i], append([]string{k}, o.keys[i:]...)...)
	o.vals = append(o.vals[:i], append([]any{v}, o.vals[i:]...)...)
}

func (o *object) empty() bool { return len(o.keys) == 0 }

// encode writes v as compact JSON.
func encode(buf *bytes.Buffer, v any) error {
	switch x := v.(type) {
	case *object:
		buf.WriteByte('{')
		for i, k := range x.keys {
			if i > 0 {
				buf.WriteByte(',')
			}
			if err := encodeString(buf, k); err != nil {
				return err
			}
			buf.WriteByte(':')
			if err := encode(buf, x.vals[i]); err != nil {
				return err
			}
		}
		buf.WriteByte('}')
	case []any:
		buf.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				buf.WriteByte(',')
			}
			if err := encode(buf, e); err != nil {
				return err
			}
		}
		buf.WriteByte(']')
	case string:
		return encodeString(buf, x)
	case json.Number:
		// Literals come from the decoder (which validated them) or are
		// generated here; they are written as they are, so that a value's
		// precision ("7.20") survives.
		buf.WriteString(string(x))
	case bool:
		if x {
			buf.WriteString("true")
		} else {
			buf.WriteString("false")
		}
	default:
		return fmt.Errorf("deid: internal error: cannot encode %T", v)
	}
	return nil
}

// encodeString writes s as a JSON string, without the HTML escaping of
// encoding/json ("<", ">" and "&" stay as they are: ">=" is a comparator).
func encodeString(buf *bytes.Buffer, s string) error {
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		return err
	}
	buf.Truncate(buf.Len() - 1) // Encode ends what it writes with a newline
	return nil
}
