package account

import (
	"crypto/rand"
	"hash/crc32"
	"strings"
)

// Generated keys look like tg_<32 base62 characters>_<6 base62 characters>:
// 190 random bits and a CRC-32 of them, so that secret scanners can tell a
// real key from a look-alike without asking us.
const (
	keyPrefix      = "tg_"
	keyRandomLen   = 32
	keyChecksumLen = 6
	// KeyLen is the length of a generated key.
	KeyLen = len(keyPrefix) + keyRandomLen + 1 + keyChecksumLen
	// keyShownLen is how much of a key the admin API shows: "tg_" and 4
	// random characters, 24 bits of the 190.
	keyShownLen = len(keyPrefix) + 4
)

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// GenerateKey returns a new random API key.
func GenerateKey() string {
	random := randomBase62(keyRandomLen)
	return keyPrefix + random + "_" + checksum(random)
}

// KeyPrefix returns the start of a key that may be shown: its prefix and
// a few random characters.
func KeyPrefix(key string) string {
	if len(key) < keyShownLen {
		return key
	}
	return key[:keyShownLen]
}

// IsGeneratedKey tells whether key has the form and checksum of a
// generated key. It says nothing of whether the key is live.
func IsGeneratedKey(key string) bool {
	if len(key) != KeyLen || !strings.HasPrefix(key, keyPrefix) || key[len(keyPrefix)+keyRandomLen] != '_' {
		return false
	}
	random := key[len(keyPrefix) : len(keyPrefix)+keyRandomLen]
	for i := range len(random) {
		if strings.IndexByte(base62, random[i]) < 0 {
			return false
		}
	}
	return key[len(key)-keyChecksumLen:] == checksum(random)
}

// NewID returns a random identifier: prefix and n base62 characters.
func NewID(prefix string, n int) string { return prefix + randomBase62(n) }

// randomBase62 returns n characters drawn uniformly from base62.
func randomBase62(n int) string {
	out := make([]byte, 0, n)
	var buf [64]byte
	for len(out) < n {
		_, _ = rand.Read(buf[:]) // never fails (crypto/rand)
		for _, b := range buf {
			// 248 = 4 × 62: rejecting the rest keeps every character
			// equally likely.
			if b < 248 && len(out) < n {
				out = append(out, base62[b%62])
			}
		}
	}
	return string(out)
}

// checksum is the CRC-32 (IEEE) of s in 6 base62 digits.
func checksum(s string) string {
	c := crc32.ChecksumIEEE([]byte(s))
	var out [keyChecksumLen]byte
	for i := keyChecksumLen - 1; i >= 0; i-- {
		out[i] = base62[c%62]
		c /= 62
	}
	return string(out[:])
}
