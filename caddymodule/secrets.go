package caddymodule

import (
	"net/url"
	"regexp"

	"go.uber.org/zap"
)

// runtimePlaceholder matches a placeholder that Provision replaces with a
// secret from outside the configuration: {env.NAME} or {file.PATH}.
var runtimePlaceholder = regexp.MustCompile(`\{(env|file)\.[^{}]+\}`)

// literalSecret tells whether a configured secret is written out in the
// configuration rather than given by a runtime placeholder.
func literalSecret(v string) bool {
	return v != "" && !runtimePlaceholder.MatchString(v)
}

// warnLiteralSecrets warns of each secret of a static account written out
// in the configuration: Caddy's admin API shows the configuration
// (GET /config/), and without persist_config off Caddy saves it to
// autosave.json.
func (a *App) warnLiteralSecrets() {
	const advice = "a secret is written out in the configuration, where Caddy's admin API shows it (GET /config/) and autosave.json keeps it; give it as {env.NAME} or {file.PATH}"
	for _, c := range a.Accounts {
		for _, k := range c.Keys {
			if literalSecret(k) {
				a.logger.Warn(advice+", or use key_sha256 <hash> instead of key",
					zap.String("account_id", c.ID), zap.String("option", "key"))
				break
			}
		}
		for i, w := range c.Webhooks {
			for _, o := range [...]struct{ name, value string }{{"secret", w.Secret}, {"authorization", w.Authorization}} {
				if literalSecret(o.value) {
					a.logger.Warn(advice, zap.String("account_id", c.ID), zap.String("webhook_host", urlHost(w.URL)), zap.Int("webhook_index", i), zap.String("option", o.name))
				}
			}
		}
	}
}

// urlHost is the host of a webhook URL, for logs: the rest of it may carry
// a token.
func urlHost(s string) string {
	if u, err := url.Parse(s); err == nil {
		return u.Host
	}
	return ""
}
