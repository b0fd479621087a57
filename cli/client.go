package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

// apiRequest is what a subcommand asks of the admin API.
type apiRequest struct {
	// what the request is about, such as "account acme"; its errors start
	// with it.
	what   string
	method string
	uri    string
	// body, when not nil, is sent as JSON.
	body any
}

// apiError is an error answer of the admin API.
type apiError struct {
	// Status is the HTTP status.
	Status int
	// Code is the wire code, such as ACCOUNT_EXISTS; empty when the answer
	// did not come from taskgate (e.g. Caddy's own 404).
	Code string
	// Message explains the error.
	Message string
}

// requestTimeout bounds one call to the admin API.
const requestTimeout = time.Minute

// maxAnswer bounds the size of an admin API answer.
const maxAnswer = 16 << 20

// newAdminClient returns the client of a command's subcommands, with the
// flags they share: where the admin endpoint is, and --json.
func newAdminClient(cmd *cobra.Command) *adminClient {
	c := &adminClient{}
	pf := cmd.PersistentFlags()
	pf.StringVar(&c.address, "address", "", "Address of the admin endpoint, if different from the config's")
	pf.StringVarP(&c.config, "config", "c", "", "Configuration file to read the admin address from")
	pf.StringVarP(&c.adapter, "adapter", "a", "", "Name of the config adapter for --config")
	pf.BoolVar(&c.json, "json", false, "Print the API's JSON answer instead of text")
	return c
}

// onAccount is a request about the account id, to its path followed by
// sub ("", "/keys", …).
func onAccount(id, method, sub string, body any) *apiRequest {
	return &apiRequest{"account " + id, method, accountPath(id) + sub, body}
}

// apiCommand makes cmd run as every subcommand does: request turns the
// arguments and flags into a request (or refuses them, before anything is
// sent), the request is sent, and the answer is printed, as the API's JSON
// with --json, else decoded into T and written by human for people.
func apiCommand[T any](c *adminClient, cmd *cobra.Command,
	request func(args []string) (*apiRequest, error),
	human func(w io.Writer, args []string, answer *T),
) *cobra.Command {
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		req, err := request(args)
		if err != nil {
			return err
		}
		raw, err := c.do(cmd, req)
		if err != nil {
			return err
		}
		return printAnswer(c, cmd, raw, func(w io.Writer, answer *T) { human(w, args, answer) })
	}
	return cmd
}

// accountPath is the admin API path of one account.
func accountPath(id string) string {
	return "/taskgate/accounts/" + url.PathEscape(id)
}

func (e *apiError) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("HTTP %d: %s", e.Status, e.Message)
	}
	return fmt.Sprintf("%s: %s (HTTP %d)", e.Code, e.Message, e.Status)
}

// do sends one request to the admin API and returns the body of a
// successful answer.
func (c *adminClient) do(cmd *cobra.Command, r *apiRequest) ([]byte, error) {
	addr, err := caddycmd.DetermineAdminAPIAddress(c.address, nil, c.config, c.adapter)
	if err != nil {
		return nil, fmt.Errorf("finding the admin address: %w", err)
	}
	var reqBody io.Reader
	if r.body != nil {
		b, err := json.Marshal(r.body)
		if err != nil {
			return nil, err
		}
		reqBody = bytes.NewReader(b)
	}
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()

	status, answer, err := adminRequest(ctx, addr, r.method, r.uri, reqBody)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", r.what, err)
	}
	if status >= 400 {
		return nil, fmt.Errorf("%s: %w", r.what, decodeError(status, answer))
	}
	return answer, nil
}

// adminRequest does what caddycmd.AdminAPIRequest does (the admin address
// may be tcp or a unix socket; Origin is set for tcp), but returns error
// answers to the caller rather than folding them into a string.
func adminRequest(ctx context.Context, addr, method, uri string, body io.Reader) (int, []byte, error) {
	na, err := caddy.ParseNetworkAddress(addr)
	if err != nil || na.PortRangeSize() > 1 {
		return 0, nil, fmt.Errorf("invalid admin address %q: %v", addr, err)
	}
	if na.IsFdNetwork() {
		return 0, nil, fmt.Errorf("admin address %s is a file descriptor, which this command cannot reach; give --address", addr)
	}
	origin := "http://" + na.JoinHostPort(0)
	if na.IsUnixNetwork() {
		// The host is never used, but keeps the request well-formed and,
		// should it be used, local. Unix socket permission bits
		// ("path|0220") are part of the listen address, not of the path.
		origin = "http://127.0.0.1"
		na.Host, _, _ = strings.Cut(na.Host, "|")
	}
	req, err := http.NewRequestWithContext(ctx, method, origin+uri, body)
	if err != nil {
		return 0, nil, fmt.Errorf("making request: %v", err)
	}
	if !na.IsUnixNetwork() {
		req.Header.Set("Origin", origin)
	}
	// The admin API refuses writes not said to be JSON, body or not.
	if body != nil || method == http.MethodPost || method == http.MethodPatch || method == http.MethodPut {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")

	client := http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, na.Network, na.JoinHostPort(0))
		},
	}}
	defer client.CloseIdleConnections()
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("reaching the admin API at %s (is taskgate running?): %v", addr, err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return 0, nil, fmt.Errorf("HTTP %d: reading the answer: %v", resp.StatusCode, err)
	}
	return resp.StatusCode, answer, nil
}

// decodeError makes an error of an error answer: taskgate's
// {"error","message"}, Caddy's {"error"} or anything else.
func decodeError(status int, answer []byte) *apiError {
	e := &apiError{Status: status}
	var wire struct {
		Error   string `json:"error"`
		Message string `json:"message"`
	}
	switch {
	case json.Unmarshal(answer, &wire) == nil && wire.Error != "" && wire.Message != "":
		e.Code, e.Message = clean(wire.Error), clean(wire.Message)
	case wire.Error != "":
		e.Message = clean(wire.Error)
	default:
		e.Message = clean(strings.TrimSpace(string(answer)))
		if r := []rune(e.Message); len(r) > 300 {
			e.Message = string(r[:300]) + "…"
		}
		if e.Message == "" {
			e.Message = http.StatusText(status)
		}
	}
	return e
}

// printAnswer prints a successful answer: as indented JSON with --json, else
// decoded into T and written by human. An answer that cannot be written
// (a full disk, a closed pipe) fails the command: it may hold a key shown
// once.
func printAnswer[T any](c *adminClient, cmd *cobra.Command, raw []byte, human func(io.Writer, *T)) error {
	w := &errWriter{w: cmd.OutOrStdout()}
	if c.json {
		var buf bytes.Buffer
		if err := json.Indent(&buf, raw, "", "  "); err != nil {
			return fmt.Errorf("the admin API answered with invalid JSON: %v", err)
		}
		buf.WriteByte('\n')
		_, _ = buf.WriteTo(w)
	} else {
		v := new(T)
		if err := json.Unmarshal(raw, v); err != nil {
			return fmt.Errorf("decoding the admin API's answer: %v", err)
		}
		human(w, v)
	}
	if w.err != nil {
		return fmt.Errorf("the admin API answered (a change it asked for is made), but the answer could not be written: %w", w.err)
	}
	return nil
}

// errWriter writes to w until a write fails, and keeps that error.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	e.err = err
	return n, err
}
