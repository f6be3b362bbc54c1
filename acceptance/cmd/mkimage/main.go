// Command mkimage writes a small OCI image layout holding one busybox-static
// layer (/bin/busybox and a symlink per applet) for the demo:
//
//	mkimage -busybox /bin/busybox -out DIR -tag demo
//
// The result is usable as the image reference oci:DIR:demo.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/taproot-dev/taproot/acceptance/internal/imagebuilder"
)

func main() {
	busybox := flag.String("busybox", "/bin/busybox", "static busybox binary to put at /bin/busybox")
	out := flag.String("out", "", "OCI layout directory to write (created if missing)")
	tag := flag.String("tag", "latest", "tag (org.opencontainers.image.ref.name) of the image")
	flag.Parse()
	if *out == "" {
		fmt.Fprintln(os.Stderr, "mkimage: -out is required")
		os.Exit(2)
	}
	base, err := imagebuilder.BusyboxLayer(*busybox, imagebuilder.Gzip)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
	img := imagebuilder.Image{
		Layers: []imagebuilder.Layer{base, {Compression: imagebuilder.Gzip, Entries: []imagebuilder.Entry{
			imagebuilder.Dir("etc"),
			imagebuilder.File("etc/motd", "hello from a taproot rootfs\n"),
		}}},
		Config: imagebuilder.Config{
			Env:        []string{"PATH=/bin:/usr/bin", "DEMO=1"},
			WorkingDir: "/",
			Cmd:        []string{"/bin/sh"},
		},
	}
	b, err := imagebuilder.WriteLayout(*out, *tag, img)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
	fmt.Printf("oci:%s:%s manifest %s, %d layers\n", *out, *tag, b.ManifestDigest, len(b.Layers))
}
