// Package cli builds taproot's cobra command tree: one NewCmdX constructor
// per command. Each command parses its flags into a request of package
// builder, calls one use case and encodes the result: JSON on stdout,
// everything else on stderr. An optional flag reaches the request only
// when given (cmd.Flags().Changed), so that the builder can apply flag
// over config over default once. Progress bars and JSON progress events
// (progress.go, events.go) plug into the use case's Hooks; main turns a
// returned error into one line and the exit code of its class (exitcode.go).
package cli
