package cli

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// manCommand is the hidden command that writes the man pages; `make man`
// and scripts/mkdeb.sh run it with the built binary.
const manCommand = "__man"

// NewCmdMan returns the hidden `taproot __man DIR`: one man page per
// command (taproot.1, taproot-create.1, …) generated from the cobra tree.
func NewCmdMan(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:               manCommand + " <dir>",
		Short:             "Write taproot's man pages (section 1) into <dir>",
		Hidden:            true,
		Args:              cobra.ExactArgs(1),
		PersistentPreRunE: func(*cobra.Command, []string) error { g.ran = true; return nil },
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := os.MkdirAll(args[0], 0o755); err != nil {
				return err
			}
			root := cmd.Root()
			root.InitDefaultCompletionCmd()
			root.DisableAutoGenTag = true
			manSafe(root)
			hdr := &doc.GenManHeader{Title: "TAPROOT", Section: "1", Source: "taproot", Manual: "taproot manual"}
			if err := doc.GenManTree(root, hdr, args[0]); err != nil {
				return fmt.Errorf("man pages: %w", err)
			}
			return nil
		},
	}
}

// setCompletionHelp gives cobra's built-in completion command examples.
func setCompletionHelp(root *cobra.Command) {
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		if c.Name() == "completion" {
			c.Example = `  # bash, for the current shell:
  source <(taproot completion bash)
  # bash, for every session (Debian: the package installs this file):
  taproot completion bash > /etc/bash_completion.d/taproot
  # zsh:
  taproot completion zsh > "${fpath[1]}/_taproot"
  # fish:
  taproot completion fish > ~/.config/fish/completions/taproot.fish`
		}
	}
}

// manSafe rewrites the help texts of this (one-shot) process's command tree
// for go-md2man, which reads them as markdown: "<id>" must not vanish as an
// HTML tag, and indented lines (tables, examples) stay as they are written.
func manSafe(c *cobra.Command) {
	esc := strings.NewReplacer("<", `\<`, ">", `\>`, "*", `\*`, "_", `\_`)
	c.Use = esc.Replace(c.Use)
	var out []string
	inBlock := false
	for _, l := range strings.Split(c.Long, "\n") {
		indented := strings.HasPrefix(l, " ")
		switch {
		case indented && !inBlock:
			out = append(out, "", "```")
			inBlock = true
		case !indented && inBlock:
			out = append(out, "```", "")
			inBlock = false
		}
		if !inBlock {
			l = esc.Replace(l)
		}
		out = append(out, l)
	}
	if inBlock {
		out = append(out, "```")
	}
	c.Long = strings.Join(out, "\n")
	for _, sub := range c.Commands() {
		manSafe(sub)
	}
}
