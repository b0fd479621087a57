// Package jsonkey holds the keys of JSON objects to the exact case of the
// Go fields they fill. encoding/json matches a key to a field ignoring case
// (and Unicode folding: "taſk_id" fills task_id), so {"TASK_ID":…} would be
// taken for task_id, and a body carrying both spellings would keep one of
// them silently. The APIs refuse such keys instead: one spelling, one
// meaning.
package jsonkey

import (
	"bytes"
	"encoding"
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"sync"
)

// Schema is what Check needs to know of a Go type: the exact JSON names of
// its struct fields, at every level encoding/json decodes them itself.
// Values of types that decode themselves (json.Unmarshaler, such as
// json.RawMessage or time.Time) are left alone.
type Schema struct {
	// fields, for a struct, is the schema of each field's value by its
	// exact JSON name (nil: nothing to check in it).
	fields map[string]*Schema
	// names are the keys of fields, for the comparisons that ignore case.
	names [][]byte
	// elem, for a slice, an array or a map, is the schema of each element.
	elem *Schema
}

var schemas sync.Map // reflect.Type → *Schema

// For returns the schema of t (a pointer is followed), built once per type.
// It is nil when t has no struct fields to check.
func For(t reflect.Type) *Schema {
	if s, ok := schemas.Load(t); ok {
		return s.(*Schema)
	}
	s := build(t, map[reflect.Type]*Schema{})
	schemas.Store(t, s)
	return s
}

var (
	unmarshaler     = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// build returns the schema of t; building holds the structs being built,
// so that a type that contains itself ends.
func build(t reflect.Type, building map[reflect.Type]*Schema) *Schema {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if p := reflect.PointerTo(t); p.Implements(unmarshaler) || p.Implements(textUnmarshaler) {
		return nil
	}
	switch t.Kind() {
	case reflect.Struct:
		if s, ok := building[t]; ok {
			return s
		}
		s := &Schema{fields: map[string]*Schema{}}
		building[t] = s
		addFields(s, t, building)
		for name := range s.fields {
			s.names = append(s.names, []byte(name))
		}
		if len(s.fields) == 0 {
			return nil
		}
		return s
	case reflect.Slice, reflect.Array, reflect.Map:
		if elem := build(t.Elem(), building); elem != nil {
			return &Schema{elem: elem}
		}
	}
	return nil
}

// addFields adds the fields of struct t to s, those of embedded structs
// included (an outer field hides an inner one of the same name).
func addFields(s *Schema, t reflect.Type, building map[reflect.Type]*Schema) {
	var embedded []reflect.Type
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		// As encoding/json: an embedded struct, even of an unexported type,
		// lends its fields unless a tag names it.
		if f.Anonymous {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() != reflect.Struct && !f.IsExported() {
				continue
			}
			if ft.Kind() == reflect.Struct && name == "" {
				embedded = append(embedded, ft)
				continue
			}
		} else if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		if _, ok := s.fields[name]; !ok {
			s.fields[name] = build(f.Type, building)
		}
	}
	for _, ft := range embedded {
		addFields(s, ft, building)
	}
}

// CaseError is a key that names a field only when case is ignored.
type CaseError struct {
	// Key is the key as the body spells it, unescaped.
	Key string
	// Field is the field's JSON name.
	Field string
}

func (e *CaseError) Error() string {
	return "key " + strconv.Quote(e.Key) + " is not " + strconv.Quote(e.Field) + ": keys are case-sensitive"
}

// Check returns a *CaseError for the first key of b that differs from a
// field's name of s only in case, or nil. Keys that name no field at all
// are not its concern (the decoder ignores or refuses them). b should be
// valid JSON; Check never fails on one that is not, and leaves finding
// that to the decoder. A nil schema checks nothing.
func (s *Schema) Check(b []byte) error {
	if s == nil {
		return nil
	}
	sc := scanner{b: b}
	if k := sc.value(s); k != nil {
		return k
	}
	return nil
}

// scanner walks a JSON text once, without building anything.
type scanner struct {
	b []byte
	i int
}

func (sc *scanner) space() {
	for sc.i < len(sc.b) {
		switch sc.b[sc.i] {
		case ' ', '\t', '\n', '\r':
			sc.i++
		default:
			return
		}
	}
}

// value checks the value at sc.i against s (nil: skips it).
func (sc *scanner) value(s *Schema) *CaseError {
	sc.space()
	if sc.i >= len(sc.b) || s == nil {
		sc.skip()
		return nil
	}
	switch sc.b[sc.i] {
	case '{':
		return sc.object(s)
	case '[':
		if s.fields == nil {
			return sc.array(s.elem)
		}
	}
	sc.skip()
	return nil
}

// object checks the object at sc.i: its keys against the fields of s (a
// struct) or its values against s.elem (a map).
func (sc *scanner) object(s *Schema) *CaseError {
	sc.i++ // {
	for {
		sc.space()
		if sc.i >= len(sc.b) {
			return nil
		}
		switch sc.b[sc.i] {
		case '}':
			sc.i++
			return nil
		case ',':
			sc.i++
			continue
		case '"':
		default:
			// Not valid JSON: the decoder says so.
			sc.i = len(sc.b)
			return nil
		}
		raw, escaped := sc.str()
		sc.space()
		if sc.i < len(sc.b) && sc.b[sc.i] == ':' {
			sc.i++
		}
		next := s.elem
		if s.fields != nil {
			key := raw
			if escaped {
				key = unescape(raw)
			}
			f, exact := s.fields[string(key)]
			if !exact {
				for _, name := range s.names {
					if bytes.EqualFold(key, name) {
						return &CaseError{Key: string(key), Field: string(name)}
					}
				}
			}
			next = f
		}
		if e := sc.value(next); e != nil {
			return e
		}
	}
}

// array checks each element of the array at sc.i against elem.
func (sc *scanner) array(elem *Schema) *CaseError {
	sc.i++ // [
	for {
		sc.space()
		if sc.i >= len(sc.b) {
			return nil
		}
		switch sc.b[sc.i] {
		case ']':
			sc.i++
			return nil
		case ',':
			sc.i++
			continue
		}
		start := sc.i
		if e := sc.value(elem); e != nil {
			return e
		}
		if sc.i == start {
			// Not valid JSON: the decoder says so.
			sc.i = len(sc.b)
			return nil
		}
	}
}

// str moves past the string at sc.i and returns its content, raw, and
// whether it holds escapes.
func (sc *scanner) str() (raw []byte, escaped bool) {
	sc.i++ // "
	start := sc.i
	for {
		j := bytes.IndexByte(sc.b[sc.i:], '"')
		if j < 0 {
			sc.i = len(sc.b)
			return sc.b[start:], true
		}
		end := sc.i + j
		sc.i = end + 1
		// The quote ends the string unless an odd run of backslashes
		// escapes it.
		n := 0
		for k := end - 1; k >= start && sc.b[k] == '\\'; k-- {
			n++
		}
		if n%2 == 0 {
			raw = sc.b[start:end]
			return raw, bytes.IndexByte(raw, '\\') >= 0
		}
	}
}

// skip moves past the value at sc.i, whatever it is.
func (sc *scanner) skip() {
	sc.space()
	if sc.i >= len(sc.b) {
		return
	}
	switch sc.b[sc.i] {
	case '"':
		sc.str()
		return
	case '{', '[':
		depth := 0
		for sc.i < len(sc.b) {
			switch sc.b[sc.i] {
			case '"':
				sc.str()
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					sc.i++
					return
				}
			}
			sc.i++
		}
		return
	}
	// A number, true, false or null.
	for sc.i < len(sc.b) {
		switch sc.b[sc.i] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return
		}
		sc.i++
	}
}

// unescape returns the content of a JSON string with escapes, unescaped;
// the raw content when it is not valid.
func unescape(raw []byte) []byte {
	quoted := make([]byte, 0, len(raw)+2)
	quoted = append(append(append(quoted, '"'), raw...), '"')
	var s string
	if err := json.Unmarshal(quoted, &s); err != nil {
		return raw
	}
	return []byte(s)
}
