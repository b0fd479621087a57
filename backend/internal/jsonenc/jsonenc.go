// Package jsonenc encodes values as the stores keep them: JSON as
// encoding/json writes it, but with HTML left unescaped, so that the raw
// JSON a value holds (a task's data, a webhook's body) is kept as it was,
// compacted.
package jsonenc

import (
	"bytes"
	"encoding/json"
)

// Marshal encodes v as encoding/json does, without escaping HTML.
func Marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
