package cli

import "github.com/taproot-dev/taproot/builder"

// ExitCode is taproot's exit status: one value per class of failure, so a
// daemon decides what to do (fix the request, tell the user, retry, page an
// operator) from the status alone. docs/troubleshooting.md has the table.
type ExitCode int

// The exit-code classes. Their numbers are part of the CLI contract: add new
// ones at the end, never renumber.
const (
	ExitOK           ExitCode = 0
	ExitInternal     ExitCode = 1 // none of the below: a bug or an unexpected system error
	ExitBadInput     ExitCode = 2 // bad flag, config, image reference or id; id exists; mapping differs
	ExitNotFound     ExitCode = 3 // the image (reference) or image id does not exist
	ExitUnauthorized ExitCode = 4 // credentials refused, signature policy rejects, permission denied
	ExitTransient    ExitCode = 5 // registry unreachable, network failure, timeout, interrupted: retry may help
	ExitLimit        ExitCode = 6 // disk limit below the image size, quota helper refused, disk full, quota exceeded
	ExitDamaged      ExitCode = 7 // the store is damaged (taproot check found damage): run check --repair
)

// Class is the code's name in JSON errors ("class" field).
func (c ExitCode) Class() string {
	switch c {
	case ExitOK:
		return "ok"
	case ExitInternal:
		return "internal"
	case ExitBadInput:
		return "bad_input"
	case ExitNotFound:
		return "not_found"
	case ExitUnauthorized:
		return "unauthorized"
	case ExitTransient:
		return "transient"
	case ExitLimit:
		return "limit"
	case ExitDamaged:
		return "store_damaged"
	}
	return "unknown"
}

// badInput marks err as the caller's mistake (exit code 2) without
// changing its text.
func badInput(err error) error { return builder.BadInput(err) }

// exitCodeOf is the exit status of err: its class (builder.ClassOf).
func exitCodeOf(err error) ExitCode {
	if err == nil {
		return ExitOK
	}
	switch builder.ClassOf(err) {
	case builder.ClassBadInput:
		return ExitBadInput
	case builder.ClassNotFound:
		return ExitNotFound
	case builder.ClassUnauthorized:
		return ExitUnauthorized
	case builder.ClassTransient:
		return ExitTransient
	case builder.ClassLimit:
		return ExitLimit
	case builder.ClassDamaged:
		return ExitDamaged
	}
	return ExitInternal
}
