// Command taproot-quota is taproot's setuid-root quota helper. All of its
// logic, and its security design, is in package quotahelper.
package main

import (
	"os"

	"github.com/taproot-dev/taproot/quotahelper"
)

func main() {
	os.Exit(quotahelper.Main(os.Args, os.Stdout, os.Stderr))
}
