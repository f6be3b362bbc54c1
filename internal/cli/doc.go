// Package cli builds taproot's cobra command tree: one NewCmdX constructor
// per command. Each command parses its flags into a request of package
// builder, calls one use case and encodes the result: JSON on stdout,
// everything else on stderr. An optional flag reaches the request only
// when given (cmd.Flags().Changed), so that the builder can apply flag
// over config over default once. Progress bars and JSON progress events
// (progress.go, events.go) plug into the use case's Hooks; main turns a
// returned error into one line and the exit code of its class (exitcode.go).
//
// # Reading order
//
// Main (root.go) is what cmd/taproot calls: it builds the tree
// (NewCmdRoot), runs it, and prints the one-line (or JSON) error with the
// exit code of builder.ClassOf's class (exitCodeOf, exitcode.go; the table
// is docs/troubleshooting.md's, which a test reads back). Before any
// command runs, globals.setup loads the config file, makes the logger and
// the one builder.Builder every command uses (builder.New with the --store
// flag and the config). Then each command's file holds its flags and a
// RunE of one screen: create.go (NewCmdCreate: fill a CreateRequest, call
// Builder.Create, encode CreateResult.Fragment), delete.go (Delete, and the
// hidden builder.ReclaimCommand that Delete starts in the background),
// stats.go (Stats, List), fetch.go (Pull), clean.go, check.go, metrics.go,
// initstore.go (InitStore, DeleteStore, Capacity), version.go, man.go.
// The store's user-namespace worker is no command here: package worker's
// Main runs it in cmd/taproot before cobra starts.
//
// # What this package must not do
//
// It holds no domain logic: no store, fetcher, gc or overlayxfs calls, no
// precedence of its own (builder resolves flag over config over default),
// no rollback. Of taproot's packages it imports builder and
// internal/config (spec is allowed too, for JSON result types only; the
// results come typed from builder today), besides cobra and logrus (whose
// log lines from containers/image it routes into slog, logrus.go); never
// quotahelper. internal/depcheck's TestLayering pins these imports.
package cli
