// Package cli builds taproot's cobra command tree: one NewCmdX constructor
// per command. Commands print results (JSON) on stdout and everything else
// on stderr; main turns a returned error into one line and a non-zero exit.
package cli
