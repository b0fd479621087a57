package cli

import (
	"bufio"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/taskgate/taskgate/backend/account"
)

// hashKeyCommand is `taskgate hash-key`.
var hashKeyCommand = caddycmd.Command{
	Name:  "hash-key",
	Usage: "< key-file",
	Short: "Prints the SHA-256 of an API key read on standard input, for key_sha256",
	Long: `
Reads one API key on standard input (a trailing newline is ignored) and
prints its SHA-256 in hex, the value of an account's key_sha256 option.
The key is never taken as an argument, so that it stays out of the shell
history and the process list:

	printf '%s' "$KEY" | taskgate hash-key
`,
	CobraFunc: func(cmd *cobra.Command) {
		cmd.Args = cobra.NoArgs
		cmd.RunE = func(cmd *cobra.Command, _ []string) error {
			sum, err := hashKeyFrom(os.Stdin)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), sum)
			return err
		}
	},
}

// hashKeyFrom reads one key from r and returns the hex SHA-256 of it.
func hashKeyFrom(r io.Reader) (string, error) {
	line, err := bufio.NewReader(io.LimitReader(r, 64<<10)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	key := strings.TrimRight(line, "\r\n")
	if key == "" {
		return "", errors.New("no key on standard input")
	}
	sum := account.HashKey(key)
	return hex.EncodeToString(sum[:]), nil
}
