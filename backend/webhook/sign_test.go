package webhook_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/taskgate/taskgate/backend/webhook"
)

// The test vector published with the Standard Webhooks reference libraries.
const (
	vectorSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	vectorID        = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vectorTimestamp = 1614265330
	vectorBody      = `{"test": 2432232314}`
	vectorSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

// verify checks a webhook-signature header as a receiver would, straight
// from the spec and without the package's code: the key is the base64 after
// "whsec_", the signed content is "id.timestamp.body", and any of the
// space-separated "v1,<base64>" signatures may match.
func verify(secret, id, timestamp string, body []byte, header string) bool {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + timestamp + "." + string(body)))
	want := mac.Sum(nil)
	for _, sig := range strings.Fields(header) {
		version, encoded, ok := strings.Cut(sig, ",")
		if !ok || version != "v1" {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(encoded)
		if err == nil && hmac.Equal(got, want) {
			return true
		}
	}
	return false
}

func TestSignMatchesTheSpecVector(t *testing.T) {
	key, err := webhook.ParseSecret(vectorSecret)
	if err != nil {
		t.Fatal(err)
	}
	got := webhook.Sign(key, vectorID, time.Unix(vectorTimestamp, 0), []byte(vectorBody))
	if got != vectorSignature {
		t.Fatalf("Sign = %s, want %s", got, vectorSignature)
	}
	if !verify(vectorSecret, vectorID, strconv.Itoa(vectorTimestamp), []byte(vectorBody), vectorSignature) {
		t.Fatal("the verifier rejects the spec's vector")
	}
}

func TestVerifierRejectsChanges(t *testing.T) {
	ts := strconv.Itoa(vectorTimestamp)
	for name, ok := range map[string]bool{
		"id":        verify(vectorSecret, vectorID+"x", ts, []byte(vectorBody), vectorSignature),
		"timestamp": verify(vectorSecret, vectorID, strconv.Itoa(vectorTimestamp+1), []byte(vectorBody), vectorSignature),
		"body":      verify(vectorSecret, vectorID, ts, []byte(vectorBody+" "), vectorSignature),
		"secret":    verify("whsec_"+base64.StdEncoding.EncodeToString(make([]byte, 24)), vectorID, ts, []byte(vectorBody), vectorSignature),
		"version":   verify(vectorSecret, vectorID, ts, []byte(vectorBody), "v1a"+vectorSignature[2:]),
	} {
		if ok {
			t.Errorf("a changed %s verifies", name)
		}
	}
	if !verify(vectorSecret, vectorID, ts, []byte(vectorBody), "v1,bm90IGl0 "+vectorSignature) {
		t.Error("a list with a matching signature does not verify")
	}
}

func TestParseSecret(t *testing.T) {
	key24 := base64.StdEncoding.EncodeToString([]byte("0123456789abcdefghijklmn"))
	key64 := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("k", 64)))
	key25 := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("k", 25)))
	tests := []struct {
		in   string
		want string
	}{
		{"whsec_" + key24, "0123456789abcdefghijklmn"},
		{"whsec_" + key64, strings.Repeat("k", 64)},
		{"whsec_" + key25, strings.Repeat("k", 25)},
		{"whsec_" + strings.TrimRight(key25, "="), strings.Repeat("k", 25)},
		{key24, ""},
		{"WHSEC_" + key24, ""},
		{"whsec_", ""},
		{"whsec_" + key24[:len(key24)-4], ""},
		{"whsec_" + base64.StdEncoding.EncodeToString([]byte(strings.Repeat("k", 65))), ""},
		{"whsec_" + key24 + "!", ""},
		{"whsec_" + base64.URLEncoding.EncodeToString([]byte(strings.Repeat("\xfb", 24))), ""},
	}
	for _, tc := range tests {
		key, err := webhook.ParseSecret(tc.in)
		if tc.want == "" {
			if err == nil {
				t.Errorf("ParseSecret(%q) = %q, want an error", tc.in, key)
			} else if len(tc.in) > len("whsec_")+8 && strings.Contains(err.Error(), tc.in[len("whsec_"):]) {
				t.Errorf("ParseSecret(%q): the error repeats the secret: %v", tc.in, err)
			}
			continue
		}
		if err != nil || string(key) != tc.want {
			t.Errorf("ParseSecret(%q) = %q, %v; want %q", tc.in, key, err, tc.want)
		}
	}
}

// FuzzSign checks that whatever Sign signs, the independent verifier
// accepts, and rejects once the body changes.
func FuzzSign(f *testing.F) {
	f.Add([]byte("0123456789abcdefghijklmn"), vectorID, int64(vectorTimestamp), []byte(vectorBody))
	f.Add([]byte(strings.Repeat("\x00", 64)), "", int64(0), []byte{})
	f.Add([]byte(strings.Repeat("\xff", 33)), "msg_.", int64(-1), []byte("\x00.\n"))
	f.Fuzz(func(t *testing.T, key []byte, id string, ts int64, body []byte) {
		secret := "whsec_" + base64.StdEncoding.EncodeToString(key)
		sig := webhook.Sign(key, id, time.Unix(ts, 0), body)
		stamp := strconv.FormatInt(ts, 10)
		if !verify(secret, id, stamp, body, sig) {
			t.Fatalf("signature %s of key %x id %q ts %d body %q does not verify", sig, key, id, ts, body)
		}
		if verify(secret, id, stamp, append(body, 'x'), sig) {
			t.Fatal("signature verifies a changed body")
		}
	})
}

// FuzzParseSecret checks that ParseSecret never panics, returns keys of the
// allowed size only, and reads back what a secret was made of.
func FuzzParseSecret(f *testing.F) {
	f.Add(vectorSecret)
	f.Add("whsec_")
	f.Add("whsec_====")
	f.Add("whsec_" + base64.RawStdEncoding.EncodeToString(make([]byte, 30)))
	f.Fuzz(func(t *testing.T, s string) {
		key, err := webhook.ParseSecret(s)
		if err != nil {
			return
		}
		if len(key) < webhook.MinSecretBytes || len(key) > webhook.MaxSecretBytes {
			t.Fatalf("ParseSecret(%q) gave a key of %d bytes", s, len(key))
		}
		again, err := webhook.ParseSecret("whsec_" + base64.StdEncoding.EncodeToString(key))
		if err != nil || string(again) != string(key) {
			t.Fatalf("ParseSecret(%q) = %x, but its canonical form gives %x, %v", s, key, again, err)
		}
	})
}
