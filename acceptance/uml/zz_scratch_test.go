package uml

import (
	"context"
	"os"
	"testing"
	"time"
)

func TestZZScratch(t *testing.T) {
	p := os.Getenv("SCRATCH")
	if p == "" {
		t.Skip()
	}
	s, _ := os.ReadFile(p)
	res, err := Boot(context.Background(), t, string(s), Options{WorkDir: os.Getenv("SCRATCH_DIR"), Timeout: 4 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("exit %d boot %v dur %v\n%s", res.ExitCode, res.BootTime, res.Duration, res.Output)
}
