package webhook

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// SecretPrefix starts every webhook secret, as Standard Webhooks has it.
const SecretPrefix = "whsec_"

// The bounds of a secret's key, in bytes: Standard Webhooks asks for at
// least 24 random bytes and at most 64.
const (
	MinSecretBytes = 24
	MaxSecretBytes = 64
)

// ParseSecret returns the HMAC key of a Standard Webhooks secret,
// "whsec_<base64>" (standard alphabet, padding optional). Its errors never
// repeat the secret.
func ParseSecret(s string) ([]byte, error) {
	encoded, ok := strings.CutPrefix(s, SecretPrefix)
	if !ok {
		return nil, errors.New("webhook secret must start with " + SecretPrefix)
	}
	enc := base64.StdEncoding
	if !strings.HasSuffix(encoded, "=") {
		enc = base64.RawStdEncoding
	}
	key, err := enc.Strict().DecodeString(encoded)
	if err != nil {
		return nil, errors.New("webhook secret is not " + SecretPrefix + " followed by base64")
	}
	if len(key) < MinSecretBytes || len(key) > MaxSecretBytes {
		return nil, fmt.Errorf("webhook secret is %d bytes, want %d to %d", len(key), MinSecretBytes, MaxSecretBytes)
	}
	return key, nil
}

// Sign returns the webhook-signature of a delivery per Standard Webhooks:
// "v1," and the base64 HMAC-SHA256, keyed with key, of the delivery id, the
// timestamp in Unix seconds and the body, joined by full stops.
func Sign(key []byte, id string, timestamp time.Time, body []byte) string {
	mac := hmac.New(sha256.New, key)
	prefix := make([]byte, 0, len(id)+22)
	prefix = append(prefix, id...)
	prefix = append(prefix, '.')
	prefix = strconv.AppendInt(prefix, timestamp.Unix(), 10)
	prefix = append(prefix, '.')
	mac.Write(prefix)
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// GenerateSecret returns a new signing secret: SecretPrefix and the
// base64 of 32 random bytes.
func GenerateSecret() string {
	key := make([]byte, 32)
	_, _ = rand.Read(key) // never fails (crypto/rand)
	return SecretPrefix + base64.StdEncoding.EncodeToString(key)
}
