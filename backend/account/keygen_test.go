package account

import (
	"strings"
	"testing"
)

func TestGenerateKey(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		k := GenerateKey()
		if len(k) != KeyLen || !strings.HasPrefix(k, "tg_") {
			t.Fatalf("key %q: want tg_ and %d characters", k, KeyLen)
		}
		if !IsGeneratedKey(k) {
			t.Fatalf("IsGeneratedKey(%q) = false", k)
		}
		if seen[k] {
			t.Fatalf("key %q generated twice", k)
		}
		seen[k] = true
		if p := KeyPrefix(k); p != k[:7] {
			t.Fatalf("KeyPrefix(%q) = %q", k, p)
		}
	}
}

func TestIsGeneratedKeyRejectsLookAlikes(t *testing.T) {
	k := GenerateKey()
	flip := []byte(k)
	flip[5] ^= 0x01 // another base62 character, or not; either way the checksum fails
	for _, s := range []string{
		"", "tg_", k[:len(k)-1], k + "x", "xx" + k[2:], string(flip),
		strings.Replace(k, "_", "-", 2),
		"tg_" + strings.Repeat("!", 32) + k[35:],
	} {
		if IsGeneratedKey(s) {
			t.Errorf("IsGeneratedKey(%q) = true", s)
		}
	}
}

func TestRandomBase62IsUniform(t *testing.T) {
	counts := map[byte]int{}
	s := randomBase62(62 * 1000)
	for i := range len(s) {
		counts[s[i]]++
	}
	if len(counts) != 62 {
		t.Fatalf("%d distinct characters, want 62", len(counts))
	}
	for c, n := range counts {
		// Expected 1000 each; 6 standard deviations is about ±190.
		if n < 800 || n > 1200 {
			t.Errorf("character %q drawn %d times in 62,000, want about 1,000", c, n)
		}
	}
}
